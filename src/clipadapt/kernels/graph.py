"""Sparse k-nearest-neighbour graphs and label propagation, without any dense N×N matrix."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

EXACT_KNN_MAX = 20000  # on the CPU, above this many points the neighbours come from faiss (approximate)
BLOCK_ELEMENTS = 2**27  # the exact search's (block, M) similarity matrix stays under 512 MB of float32


def knn_backend(points: int, device: torch.device, exact_max: int = EXACT_KNN_MAX) -> str:
    """How :func:`knn` searches ``points`` on ``device``: ``"exact"`` (blockwise matrix products) on an
    accelerator at any size and on the CPU up to ``exact_max`` points, else ``"faiss-ivf"`` (approximate)."""
    return "exact" if device.type != "cpu" or points <= exact_max else "faiss-ivf"


@torch.no_grad()
def knn(
    points: torch.Tensor,
    k: int,
    block: int | None = None,
    queries: torch.Tensor | None = None,
    backend: str = "exact",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar ``points`` (by inner product) of each query.

    Without ``queries`` the queries are the points themselves, each excluding itself. ``backend``:
    ``"exact"``, ``block`` queries at a time on the points' device (default: as many as keep the (block, M)
    similarities under ``BLOCK_ELEMENTS``): time O(Q · M · D); or ``"faiss-ivf"`` (:func:`faiss_knn`,
    approximate, CPU).

    Args:
        points: (M, D) L2-normalised points; queries: optional (Q, D) L2-normalised rows.
    Returns:
        (Q, k) similarities, descending, and (Q, k) indices into ``points`` (Q = M without ``queries``).
    """
    if backend == "faiss-ivf":
        return faiss_knn(points, k, queries)
    if backend != "exact":
        raise ValueError(f"unknown k-NN backend {backend!r}")
    m = points.shape[0]
    own = queries is None
    rows_of = points if own else queries
    k = min(k, m - 1 if own else m)
    block = block or max(1, min(4096, BLOCK_ELEMENTS // max(m, 1)))
    sims_out, idx_out = [], []
    for start in range(0, len(rows_of), block):
        stop = min(start + block, len(rows_of))
        sims = rows_of[start:stop] @ points.T  # (block, M)
        if own:
            rows = torch.arange(stop - start, device=sims.device)
            sims[rows, rows + start] = -float("inf")  # no self-loops
        top, idx = sims.topk(k, dim=1)
        sims_out.append(top)
        idx_out.append(idx)
    return torch.cat(sims_out), torch.cat(idx_out)


def knn_used(points: int, device: torch.device, exact_max: int = EXACT_KNN_MAX) -> str:
    """What a result records of the search :func:`knn_backend` picks: ``exact``, or ``faiss-ivf`` with its
    nlist and nprobe."""
    backend = knn_backend(points, device, exact_max)
    if backend == "exact":
        return backend
    nlist, nprobe = faiss_parameters(points)
    return f"{backend}(nlist={nlist},nprobe={nprobe})"


FAISS_LISTS_PER_ROOT = 4  # nlist = 4·√M inverted lists (faiss's guideline: 4·√M to 16·√M)
FAISS_NPROBE = 32  # lists visited per query
FAISS_TRAIN_PER_LIST = 40  # k-means training points per list (faiss warns below 39)


def faiss_parameters(m: int) -> tuple[int, int]:
    """(nlist, nprobe) of the inverted-file index :func:`faiss_knn` builds over ``m`` points."""
    nlist = max(1, min(int(FAISS_LISTS_PER_ROOT * m**0.5), m // FAISS_TRAIN_PER_LIST))
    return nlist, min(FAISS_NPROBE, nlist)


@torch.no_grad()
def faiss_knn(
    points: torch.Tensor, k: int, queries: torch.Tensor | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate :func:`knn` with faiss's inverted-file index (``IndexIVFFlat``, inner product) on the CPU.

    The points are clustered into nlist lists by k-means (on FAISS_TRAIN_PER_LIST · nlist points drawn
    with ``seed``), and each query scans the nprobe lists nearest to it (:func:`faiss_parameters`):
    similarities are exact for the neighbours found; a neighbour in an unvisited list is missed
    (``benchmarks/knn_recall.py`` measures how often). A point always finds itself (its own list is visited
    first), and is dropped from its own neighbours. A query that finds fewer than ``k`` points gets an
    exact search.

    Args:
        points: (M, D) L2-normalised points; queries: optional (Q, D) L2-normalised rows.
    Returns:
        (Q, k) similarities, descending, and (Q, k) indices into ``points``, on the points' device.
    """
    import faiss

    m, dim = points.shape
    own = queries is None
    k = min(k, m - 1 if own else m)
    base = np.ascontiguousarray(points.detach().float().cpu().numpy())
    nlist, nprobe = faiss_parameters(m)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    train = min(m, FAISS_TRAIN_PER_LIST * nlist)
    index.train(base[np.random.default_rng(seed).choice(m, train, replace=False)] if train < m else base)
    index.add(base)
    index.nprobe = nprobe
    asked = base if own else np.ascontiguousarray(queries.detach().float().cpu().numpy())
    sims, idx = index.search(asked, k + 1 if own else k)
    if own:  # drop each point itself (else the last of the k + 1)
        is_self = idx == np.arange(len(idx))[:, None]
        is_self[~is_self.any(1), -1] = True
        keep = ~is_self
        sims, idx = sims[keep].reshape(len(idx), k), idx[keep].reshape(len(idx), k)
    short = np.flatnonzero((idx < 0).any(1))  # fewer than k points in the visited lists
    out_sims, out_idx = torch.from_numpy(sims), torch.from_numpy(idx).long()
    if len(short):
        rows = torch.from_numpy(short)
        exact_sims, exact_idx = _exact_for(torch.from_numpy(base), torch.from_numpy(asked[short]), rows, k, own)
        out_sims[rows], out_idx[rows] = exact_sims, exact_idx
    return out_sims.to(points.device), out_idx.to(points.device)


def _exact_for(
    points: torch.Tensor, queries: torch.Tensor, rows: torch.Tensor, k: int, own: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact neighbours of a few ``queries`` (rows ``rows`` of the query set; themselves excluded if ``own``)."""
    sims = queries @ points.T
    if own:
        sims[torch.arange(len(rows)), rows] = -float("inf")
    return sims.topk(k, dim=1)


@torch.no_grad()
def knn_graph(points: torch.Tensor, k: int, backend: str = "exact") -> torch.Tensor:
    """Symmetric, normalised k-NN affinity graph, as in label propagation (Iscen et al., 2019).

    Each point keeps its ``k`` most similar other points (:func:`knn`) with affinity (cos + 1) / 2;
    A is symmetrised to W = A + Aᵀ and normalised to D^-½ W D^-½ with D the degrees of W.

    Args:
        points: (M, D) L2-normalised points.
    Returns:
        (M, M) sparse COO tensor (coalesced), at most 2·k·M non-zeros.
    """
    m = points.shape[0]
    top, idx = knn(points, k, backend=backend)
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
