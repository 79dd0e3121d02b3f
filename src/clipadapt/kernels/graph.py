"""Sparse k-nearest-neighbour graphs and label propagation, without any dense N×N matrix."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


@torch.no_grad()
def knn(
    points: torch.Tensor,
    k: int,
    block: int = 2048,
    sketch_dim: int | None = None,
    candidates: int | None = None,
    queries: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar ``points`` (by inner product) of each query, ``block`` queries at a time.

    Without ``queries`` the queries are the points themselves, each excluding itself. Exact by default:
    memory O(block · M), time O(Q · M · D). With ``sketch_dim`` < D the search runs in the top
    ``sketch_dim`` principal directions of the points (uncentred, so inner products are preserved in the
    least-squares sense), keeps ``candidates`` (default 4·k) per query and re-ranks them with the exact
    inner product: time O(Q · M · sketch_dim + Q · candidates · D). The neighbours found are exact
    similarities; only a neighbour missing from the candidates can be lost.

    Args:
        points: (M, D) L2-normalised points; queries: optional (Q, D) L2-normalised rows.
    Returns:
        (Q, k) similarities, descending, and (Q, k) indices into ``points`` (Q = M without ``queries``).
    """
    m, dim = points.shape
    own = queries is None
    rows_of = points if own else queries
    k = min(k, m - 1 if own else m)
    search, search_rows = points, rows_of
    pool = k
    if sketch_dim is not None and sketch_dim < dim:
        _, vectors = torch.linalg.eigh((points.T @ points).double())  # ascending eigenvalues
        basis = vectors[:, -sketch_dim:].to(points.dtype)
        search = points @ basis  # (M, sketch_dim)
        search_rows = search if own else rows_of @ basis
        pool = min(candidates or 4 * k, m - 1 if own else m)
    sims_out, idx_out = [], []
    for start in range(0, len(rows_of), block):
        stop = min(start + block, len(rows_of))
        sims = search_rows[start:stop] @ search.T  # (block, M)
        if own:
            rows = torch.arange(stop - start, device=sims.device)
            sims[rows, rows + start] = -float("inf")  # no self-loops
        top, idx = sims.topk(pool, dim=1)
        if pool > k:  # exact re-ranking of the candidates
            exact = torch.einsum("bd,bpd->bp", rows_of[start:stop], points[idx])
            top, pick = exact.topk(k, dim=1)
            idx = idx.gather(1, pick)
        sims_out.append(top)
        idx_out.append(idx)
    return torch.cat(sims_out), torch.cat(idx_out)


@torch.no_grad()
def knn_graph(points: torch.Tensor, k: int, block: int = 2048) -> torch.Tensor:
    """Symmetric, normalised k-NN affinity graph, as in label propagation (Iscen et al., 2019).

    Each point keeps its ``k`` most similar other points (:func:`knn`) with affinity (cos + 1) / 2;
    A is symmetrised to W = A + Aᵀ and normalised to D^-½ W D^-½ with D the degrees of W.

    Args:
        points: (M, D) L2-normalised points.
    Returns:
        (M, M) sparse COO tensor (coalesced), at most 2·k·M non-zeros.
    """
    m = points.shape[0]
    top, idx = knn(points, k, block)
    r = torch.arange(m, device=points.device).repeat_interleave(idx.shape[1])
    c, v = idx.reshape(-1), ((top + 1) / 2).reshape(-1)
    graph = torch.sparse_coo_tensor(
        torch.stack([torch.cat([r, c]), torch.cat([c, r])]), torch.cat([v, v]), (m, m), check_invariants=False
    )
    graph = graph.coalesce()
    degree = v.new_zeros(m).index_add_(0, graph.indices()[0], graph.values())
    scale = degree.clamp_min(1e-12).rsqrt()
    i, j = graph.indices()
    return torch.sparse_coo_tensor(
        graph.indices(), graph.values() * scale[i] * scale[j], (m, m), check_invariants=False
    ).coalesce()


def to_csr(graph: torch.Tensor) -> torch.Tensor:
    """The sparse matrix in CSR layout (fast sparse × dense products), without torch's "beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return graph.to_sparse_csr()


@torch.no_grad()
def conjugate_gradient(
    matvec: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    iterations: int = 20,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Solve A X = B for a symmetric positive-definite A, every column at once.

    ``matvec(p, out)`` writes A p into ``out``. Every (M, C) quantity lives in one of five buffers updated
    in place: at 50 000 × 500, fresh tensors each iteration cost more (page faults) than the arithmetic.
    A column whose residual norm falls below ``tol`` stops changing (its step is zero from then on), so the
    loop never asks the device whether to stop: no host round trip per iteration.

    Args:
        rhs: (M, C) right-hand sides B.
    Returns:
        (M, C) approximate solution after ``iterations`` steps, each column frozen once its residual < tol.
    """
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    ap = torch.empty_like(rhs)
    rs = (r * r).sum(0)
    active = rs.sqrt() >= tol  # (C,)
    for _ in range(iterations):
        matvec(p, ap)
        step = torch.where(active, rs / (p * ap).sum(0).clamp_min(1e-30), 0.0)
        x.addcmul_(p, step)
        r.addcmul_(ap, step, value=-1)
        rs_new = (r * r).sum(0)
        active &= rs_new.sqrt() >= tol
        p.mul_(rs_new / rs.clamp_min(1e-30)).add_(r)
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
    csr = to_csr(graph)
    return conjugate_gradient(lambda p, out: torch.addmm(p, csr, p, alpha=-alpha, out=out), seeds, iterations)
