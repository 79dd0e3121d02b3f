"""Sparse k-nearest-neighbour graphs and label propagation, without any dense N×N matrix."""

from __future__ import annotations

from collections.abc import Callable

import torch


@torch.no_grad()
def knn_graph(points: torch.Tensor, k: int, block: int = 2048) -> torch.Tensor:
    """Symmetric, normalised k-NN affinity graph, as in label propagation (Iscen et al., 2019).

    Each point keeps its ``k`` most similar other points (self excluded) with affinity (cos + 1) / 2;
    A is symmetrised to W = A + Aᵀ and normalised to D^-½ W D^-½ with D the degrees of W. Similarities
    are computed ``block`` rows at a time, so memory is O(block · M + M · k).

    Args:
        points: (M, D) L2-normalised points.
    Returns:
        (M, M) sparse COO tensor (coalesced), at most 2·k·M non-zeros.
    """
    m = points.shape[0]
    k = min(k, m - 1)
    rows, cols, vals = [], [], []
    for start in range(0, m, block):
        stop = min(start + block, m)
        sims = points[start:stop] @ points.T  # (block, M)
        sims[torch.arange(stop - start), torch.arange(start, stop)] = -float("inf")  # no self-loops
        top, idx = sims.topk(k, dim=1)
        rows.append(torch.arange(start, stop).repeat_interleave(k))
        cols.append(idx.reshape(-1))
        vals.append(((top + 1) / 2).reshape(-1))
    r, c, v = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    graph = torch.sparse_coo_tensor(
        torch.stack([torch.cat([r, c]), torch.cat([c, r])]), torch.cat([v, v]), (m, m), check_invariants=False
    )
    graph = graph.coalesce()
    degree = torch.zeros(m, dtype=v.dtype).index_add_(0, graph.indices()[0], graph.values())
    scale = degree.clamp_min(1e-12).rsqrt()
    i, j = graph.indices()
    return torch.sparse_coo_tensor(
        graph.indices(), graph.values() * scale[i] * scale[j], (m, m), check_invariants=False
    ).coalesce()


@torch.no_grad()
def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, iterations: int = 20, tol: float = 1e-6
) -> torch.Tensor:
    """Solve A X = B for a symmetric positive-definite A given as ``matvec``, every column at once.

    Args:
        rhs: (M, C) right-hand sides B.
    Returns:
        (M, C) approximate solution after at most ``iterations`` steps (stops when every residual < tol).
    """
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = (r * r).sum(0)
    for _ in range(iterations):
        ap = matvec(p)
        step = rs / (p * ap).sum(0).clamp_min(1e-30)
        x += step * p
        r -= step * ap
        rs_new = (r * r).sum(0)
        if float(rs_new.max().sqrt()) < tol:
            break
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x


def propagate_labels(
    graph: torch.Tensor, seeds: torch.Tensor, alpha: float = 0.99, iterations: int = 20
) -> torch.Tensor:
    """Z = (I − α W)⁻¹ Y by conjugate gradient.

    Args:
        graph: (M, M) sparse normalised affinity W.
        seeds: (M, C) initial labels Y (one-hot rows for labelled nodes, zeros elsewhere).
    Returns:
        (M, C) propagated scores Z.
    """
    return conjugate_gradient(lambda z: z - alpha * torch.sparse.mm(graph, z), seeds, iterations)
