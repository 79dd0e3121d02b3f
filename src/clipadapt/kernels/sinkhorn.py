"""Sinkhorn balancing of soft pseudo-labels (optimal transport with entropic regularisation)."""

from __future__ import annotations

import torch


@torch.no_grad()
def sinkhorn_balance(
    scores: torch.Tensor, tau: float = 0.01, iterations: int = 20, prior: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft labels whose class totals follow ``prior`` (uniform by default) and whose rows sum to 1.

    Starts from P = softmax(scores / tau) and alternately rescales columns (class mass ∝ prior) and rows
    (each sample's mass equal), ``iterations`` times, ending with rows normalised.

    Args:
        scores: (N, C) similarities (e.g. cosine between image features and class prototypes).
        prior: (C,) target class proportions, summing to 1; None means uniform.
    Returns:
        (N, C) non-negative, each row summing to 1.
    """
    n, c = scores.shape
    log_p = torch.log_softmax(scores.double() / tau, dim=1)
    target = torch.full((c,), 1.0 / c, dtype=torch.float64) if prior is None else prior.double() / prior.sum()
    log_target = target.log()
    # In the log domain: no underflow for small tau. Row mass 1/N, column mass target_j.
    for _ in range(iterations):
        log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True) + log_target
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True) - torch.log(torch.tensor(float(n)))
    return (log_p + torch.log(torch.tensor(float(n)))).exp().to(scores.dtype)
