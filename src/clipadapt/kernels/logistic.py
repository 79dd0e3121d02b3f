"""Multinomial logistic regression by full-batch L-BFGS (the linear probe's solver; ToyCLIP's card uses it
for its oracle probe)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    bias: torch.Tensor,
    penalty: float,
    evaluations: int = 50,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy(x Wᵀ + b, y) + penalty/2 · ‖W‖² by L-BFGS from (weights, bias).

    Args:
        x: (M, D) features; y: (M,) labels; weights: (C, D) and bias: (C,) the starting point.
    Returns:
        the fitted (C, D) weights and (C,) bias.
    """
    w = weights.clone().requires_grad_(True)
    b = bias.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [w, b], max_iter=evaluations, max_eval=evaluations, history_size=10, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(torch.addmm(b, x, w.T), y) + 0.5 * penalty * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    return w.detach(), b.detach()
