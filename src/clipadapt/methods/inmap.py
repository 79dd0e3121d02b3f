"""InMaP: intra-modal proxy learning (Qian & Hu, NeurIPS 2023, arXiv:2310.19752).

The text prototypes label the unlabelled images (soft labels at temperature τ_t), Sinkhorn balances those
labels over classes, confident rows (max > α) become one-hot, and class proxies are then learned in the
*vision* space by minimising the cross-entropy of softmax(x̂ Wᵀ / τ_i) against the labels over unit-norm
rows W, starting from the text prototypes. The official code solves this with 2000 full-batch projected
gradient steps (step lr/(N·τ_i), lr halved whenever the gradient norm grows): ``solver="gd"``.

Solver choice (``solver="auto"``, the default; the result's ``hparams["solver_used"]`` says which ran): the
official solver on any GPU, and on the CPU whenever N·C·D ≤ ``gd_max_size`` (2·10⁸: 2000 steps of two
N × C × D products, ~20 s on two CPU cores; every WHU-RS19 file, 1.2–2.4 s each); above that size on the
CPU, L-BFGS on the same objective (at most 25 loss-and-gradient evaluations), a departure
(docs/faithfulness.md): at 50 000 × 1000 classes × 1024 the official steps take about an hour on two
cores and L-BFGS ~45 s; on the eight WHU files L-BFGS ends within 5 % of the official solver's final loss
and moves top-1 by −0.5 to +0.3 points. On an H200 the official steps at that size took 9.1 s in strict
float32 and 2.2 s with TF32 (``--precision auto`` on CUDA; ``fp32`` switches TF32 off).
``solver="gd"`` / ``"lbfgs"`` force one. The official solver runs without a host round trip per step:
the learning-rate halving is decided on the device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels import sinkhorn_balance
from clipadapt.methods.assumptions import few_classes_warning
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method


def proxy_loss(features: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean cross-entropy of softmax(X Wᵀ / tau) against Y.

    Args:
        features: (N, D) L2-normalised image features X.
        proxies: (C, D) class proxies W.
        labels: (N, C) soft or hard pseudo-labels Y, rows summing to 1.
    Returns:
        () the loss.
    """
    return -(labels * torch.log_softmax(features @ proxies.T / tau, dim=1)).sum(1).mean()


@torch.no_grad()
def pseudo_labels(features: torch.Tensor, text: torch.Tensor, tau: float, sinkhorn_iterations: int) -> torch.Tensor:
    """Soft labels softmax(X Tᵀ / tau), Sinkhorn-balanced over classes unless ``sinkhorn_iterations`` is 0.

    One (N, C) float32 buffer holds the scores and then the labels (plus Sinkhorn's wide kernel meanwhile).

    Args:
        features: (N, D) L2-normalised image features X; text: (C, D) class prototypes T.
    Returns:
        (N, C) rows summing to 1.
    """
    scores = features @ text.T
    if sinkhorn_iterations > 0:
        return sinkhorn_balance(scores, tau, sinkhorn_iterations, out=scores)
    return torch.softmax(scores.div_(tau), dim=1)


@torch.no_grad()
def harden(labels: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose largest entry exceeds ``threshold`` become one-hot at it, in place (no host round trip).

    Args:
        labels: (N, C) soft labels, overwritten.
    Returns:
        ``labels`` and the (N,) mask of the rows made one-hot.
    """
    confident, top = labels.max(dim=1)
    hard = confident > threshold
    labels.masked_fill_(hard[:, None], 0.0).scatter_add_(1, top[:, None], hard[:, None].to(labels.dtype))
    return labels, hard


@torch.no_grad()
def learn_vision_proxies(
    features: torch.Tensor,
    init: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.04,
    lr: float = 10.0,
    steps: int = 2000,
) -> tuple[torch.Tensor, int]:
    """The official solver: full-batch projected gradient descent on ``proxy_loss`` over unit-norm rows.

    The step is lr/(N·tau) times Pᵀ X − Yᵀ X; lr halves whenever the gradient norm grows (compared on
    the device, so the 2000 steps queue up without waiting for each other).

    Args:
        features: (N, D) L2-normalised image features X.
        init: (C, D) starting proxies (the text prototypes).
        labels: (N, C) soft or hard pseudo-labels Y, rows summing to 1.
    Returns:
        (C, D) proxies W and the number of steps taken.
    """
    n = features.shape[0]
    target = labels.T @ features  # (C, D): Yᵀ X, fixed
    weights = init.clone()
    step = torch.tensor(lr / (n * tau), device=features.device)  # float32 on the device
    previous = torch.tensor(float("inf"), device=features.device)
    logits, probs = features.new_empty(n, init.shape[0]), features.new_empty(n, init.shape[0])  # reused
    for _ in range(steps):
        torch.mm(features, weights.T, out=logits).div_(tau)
        grad = torch.softmax(logits, dim=1, out=probs).T @ features - target  # N·tau × the gradient
        norm = grad.norm()
        step = torch.where(norm > previous, step / 2, step)
        previous = norm
        weights = F.normalize(weights - step * grad, dim=1)
    return weights, steps


@torch.no_grad()
def proxy_loss_and_grad(
    features: torch.Tensor, free: torch.Tensor, labels: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``proxy_loss`` at W = rows of V / ‖rows of V‖ and its gradient in V, written out (no autograd graph).

    With P = softmax(X Wᵀ / tau): ∂L/∂W = (Pᵀ X − Yᵀ X) / (N·tau), and ∂L/∂V projects each row of it onto
    the tangent of its sphere and divides by the row's length.

    Args:
        features: (N, D) L2-normalised image features X.
        free: (C, D) unnormalised proxies V.
        labels: (N, C) pseudo-labels Y, rows summing to 1.
    Returns:
        () loss and (C, D) gradient.
    """
    n = features.shape[0]
    length = free.norm(dim=1, keepdim=True)
    weights = free / length
    log_probs = torch.log_softmax((features @ weights.T).div_(tau), dim=1)  # (N, C); two (N, C) buffers at most
    loss = -(labels * log_probs).sum() / n
    grad = log_probs.exp_().sub_(labels).T @ features / (n * tau)  # (C, D) ∂L/∂W
    return loss, (grad - (grad * weights).sum(1, keepdim=True) * weights) / length


def learn_vision_proxies_lbfgs(
    features: torch.Tensor, init: torch.Tensor, labels: torch.Tensor, tau: float = 0.04, evaluations: int = 25
) -> tuple[torch.Tensor, int]:
    """The same problem solved by L-BFGS (strong Wolfe line search) over unnormalised proxies V.

    Args:
        features: (N, D) L2-normalised image features X.
        init: (C, D) starting proxies (the text prototypes).
        labels: (N, C) soft or hard pseudo-labels Y, rows summing to 1.
        evaluations: the most loss-and-gradient evaluations (one costs two N × C × D products).
    Returns:
        (C, D) unit-norm proxies W and the number of evaluations used.
    """
    if evaluations <= 0:
        return init.clone(), 0
    free = init.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [free],
        max_iter=evaluations,
        max_eval=evaluations,
        history_size=10,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )
    used = 0

    def closure() -> torch.Tensor:
        nonlocal used
        used += 1
        loss, free.grad = proxy_loss_and_grad(features, free.detach(), labels, tau)
        return loss

    optimiser.step(closure)
    return F.normalize(free.detach(), dim=1), used


@register_method
@dataclass
class InMaP(Method):
    name = "inmap"
    setting = "transductive"
    summary = "InMaP: vision-space class proxies learned from Sinkhorn-balanced text pseudo-labels"
    paper = (
        "Qian et al., Intra-Modal Proxy Learning for Zero-Shot Visual Categorization with CLIP"
        " (NeurIPS 2023, arXiv:2310.19752)"
    )
    code = "https://github.com/idstcv/InMaP"
    faithfulness = "inmap"

    tau_text: float = 0.01
    tau_image: float = 0.04
    sinkhorn_iterations: int = 20  # 0 switches Sinkhorn balancing off (ablation)
    threshold: float = 0.6  # rows with max > threshold become one-hot; ≥ 1 switches it off (ablation)
    solver: Literal["auto", "lbfgs", "gd"] = "auto"  # gd: the official solver; auto: the module docstring
    gd_max_size: float = 2e8  # auto on the CPU: the official solver when N·C·D is at most this
    evaluations: int = 25  # lbfgs: loss-and-gradient evaluations
    lr: float = 10.0  # gd only
    steps: int = 2000  # gd only

    def assumption_warning(self, diagnostics: Mapping[str, float]) -> str | None:
        if self.sinkhorn_iterations <= 0:
            return None
        return few_classes_warning("InMaP", "spreads its pseudo-labels evenly over every class (Sinkhorn)", diagnostics)

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        x, text = target.normalised()
        solver = self.solver
        if solver == "auto":
            small = x.shape[0] * text.shape[0] * x.shape[1] <= self.gd_max_size
            solver = "gd" if small or x.device.type != "cpu" else "lbfgs"
        labels, hard = harden(pseudo_labels(x, text, self.tau_text, self.sinkhorn_iterations), self.threshold)
        if solver == "gd":
            proxies, steps = learn_vision_proxies(x, text, labels, self.tau_image, self.lr, self.steps)
        else:
            proxies, steps = learn_vision_proxies_lbfgs(x, text, labels, self.tau_image, self.evaluations)
        # Official inference: cosine to the proxies; the 100 scale only sharpens probabilities, not rankings.
        hparams = {**self.hparams(), "solver_used": solver}
        classifier = Classifier(proxies, target.class_names, 100.0, method=self.name, hparams=hparams)
        history = {"steps": [float(steps)], "hard_label_fraction": [float(hard.float().mean())]}
        return Fit(classifier, target_logits=classifier.logits(x), history=history)
