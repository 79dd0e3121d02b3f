"""Sinkhorn balancing of soft pseudo-labels (optimal transport with entropic regularisation)."""

from __future__ import annotations

import torch

from clipadapt.runtime import wide_float


@torch.no_grad()
def sinkhorn_balance(
    scores: torch.Tensor,
    tau: float = 0.01,
    iterations: int = 20,
    prior: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft labels whose class totals follow ``prior`` (uniform by default) and whose rows sum to 1.

    Starts from P = softmax(scores / tau) and alternately rescales columns (class mass ∝ prior) and rows
    (each sample's mass equal), ``iterations`` times, ending with rows normalised. Zero iterations give
    the softmax itself.

    Args:
        scores: (N, C) similarities (e.g. cosine between image features and class prototypes).
        prior: (C,) target class proportions, summing to 1; None means uniform.
        out: optional (N, C) tensor of ``scores``' dtype to write the result into (``scores`` itself may be
            given: it is read only before the first write).
    Returns:
        (N, C) non-negative, each row summing to 1.
    """
    n, c = scores.shape
    # Scaling form P = diag(u) K diag(v): K is computed once (float64, shifted by each row's maximum so
    # that every row keeps its largest entry exactly), then only the vectors u (N) and v (C) iterate, with
    # two matrix-vector products per iteration instead of two passes over the N × C matrix. K is the only
    # wide (N, C) buffer: every step on it is in place (at 1,000,000 × 1000 it is 8 GB in float64).
    wide = {"dtype": wide_float(scores.device), "device": scores.device}
    kernel = scores.to(wide["dtype"], copy=True).div_(tau)
    kernel.sub_(kernel.max(dim=1, keepdim=True).values).exp_()  # (N, C), entries in [0, 1]
    target = torch.full((c,), 1.0 / c, **wide) if prior is None else prior.to(**wide) / prior.sum()
    column_mass = n * target  # rows carry mass 1 each, so class j must carry N · target_j
    u = torch.ones(n, **wide)
    v = torch.ones(c, **wide)
    for _ in range(iterations):
        v = column_mass / (kernel.T @ u).clamp_min(1e-300)
        u = 1.0 / (kernel @ v).clamp_min(1e-300)
    balanced = kernel.mul_(u[:, None]).mul_(v[None, :])
    balanced.div_(balanced.sum(dim=1, keepdim=True))
    return balanced.to(scores.dtype) if out is None else out.copy_(balanced)
