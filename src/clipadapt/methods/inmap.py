"""InMaP: intra-modal proxy learning (Qian & Hu, 2023; ``shared/papers/inmap-summary.txt``).

The text prototypes label the unlabelled images (soft labels at temperature τ_t), Sinkhorn balances those
labels over classes, confident rows (max > α) become one-hot, and class proxies are then learned in the
*vision* space by minimising the cross-entropy of softmax(x̂ Wᵀ / τ_i) against the labels: a convex problem
in W solved by full-batch gradient descent from the text prototypes (step lr/(N·τ_i), lr halved whenever
the gradient norm grows, rows of W re-normalised every step). Defaults are the official code's.

Deviation (documented in the README): ``tolerance`` stops the descent early once the proxies move less
than ``tolerance`` (max absolute change) in a step; 0 runs all ``steps`` as the official code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels import sinkhorn_balance
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method


@torch.no_grad()
def learn_vision_proxies(
    features: torch.Tensor,
    init: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.04,
    lr: float = 10.0,
    steps: int = 2000,
    tolerance: float = 0.0,
) -> tuple[torch.Tensor, int]:
    """Minimise mean cross-entropy(softmax(X Wᵀ / tau), Y) over W with unit-norm rows.

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
    previous = float("inf")
    taken = 0
    while taken < steps:
        taken += 1
        probs = torch.softmax(features @ weights.T / tau, dim=1)
        grad = probs.T @ features - target  # (C, D) = N·tau × gradient of the mean cross-entropy
        norm = float(grad.norm())
        if norm > previous:
            lr /= 2
        previous = norm
        updated = F.normalize(weights - (lr / (n * tau)) * grad, dim=1)
        moved = float((updated - weights).abs().max())
        weights = updated
        if moved < tolerance:
            break
    return weights, taken


@register_method
@dataclass
class InMaP(Method):
    name = "inmap"
    setting = "transductive"
    summary = "InMaP: vision-space class proxies learned from Sinkhorn-balanced text pseudo-labels"

    tau_text: float = 0.01
    tau_image: float = 0.04
    sinkhorn_iterations: int = 20  # 0 switches Sinkhorn balancing off (ablation)
    threshold: float = 0.6  # rows with max > threshold become one-hot; ≥ 1 switches it off (ablation)
    lr: float = 10.0
    steps: int = 2000
    tolerance: float = 0.0

    def fit(self, target: FeatureSet, support: FeatureSet | None = None) -> Fit:
        x, text = target.normalised()
        scores = x @ text.T
        if self.sinkhorn_iterations > 0:
            labels = sinkhorn_balance(scores, self.tau_text, self.sinkhorn_iterations)
        else:
            labels = torch.softmax(scores / self.tau_text, dim=1)
        confident, top = labels.max(dim=1)
        hard = confident > self.threshold
        labels[hard] = F.one_hot(top[hard], labels.shape[1]).to(labels.dtype)
        proxies, steps = learn_vision_proxies(x, text, labels, self.tau_image, self.lr, self.steps, self.tolerance)
        # Official inference: cosine to the proxies; the 100 scale only sharpens probabilities, not rankings.
        classifier = Classifier(proxies, target.class_names, 100.0, method=self.name, hparams=self.hparams())
        history = {"steps": [float(steps)], "hard_label_fraction": [float(hard.float().mean())]}
        return Fit(classifier, target_logits=classifier.logits(x), history=history)
