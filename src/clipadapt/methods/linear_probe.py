"""Linear probes on frozen image features: the classic one (CLIP, CoOp) and the cross-modal one.

``linear-probe``: multinomial logistic regression on L2-normalised image features, L2 penalty λ/2·‖W‖²
chosen on the validation split from a grid of decades (CoOp searches sklearn's C = 1/λ the same way).
Solved by full-batch L-BFGS; the grid is walked from strong to weak penalty, each fit warm-started from
the previous, and the model kept is the one of the best validation accuracy (the first on ties, i.e. the
strongest penalty).

``cross-modal-linear-probe`` (Lin et al., CVPR 2023, "Multimodality helps unimodality"): the same, with
the class text features added as training samples of their class (every prompt's feature when the
features carry ``text_all``, else the class prototype) and W initialised from the zero-shot head
(100 · t̂). The paper trains with AdamW and searches its settings on validation; a full-batch L-BFGS with
the penalty searched on validation stands in for it here (documented in the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.supervised import accuracy, augmentation, require_labelled, search, training_samples

PENALTIES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


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


@register_method
@dataclass
class LinearProbe(Method):
    name = "linear-probe"
    setting = "few-shot"
    label_free = False
    summary = "Logistic regression on image features, L2 penalty chosen on the validation split"

    evaluations: int = 50  # L-BFGS evaluations per penalty on the grid
    augment: bool = True  # train on the support images' stored views too
    cross_modal: ClassVar[bool] = False

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        require_labelled(self.name, support, validation)
        assert support is not None and validation is not None and validation.labels is not None
        x, y = training_samples(support, self.augment)
        _, text = support.normalised()
        weights = torch.zeros_like(text)
        if self.cross_modal:
            prompts = support.text_all if support.text_all is not None else support.text_features[None]
            prompts = F.normalize(prompts.float(), dim=-1)  # (P, C, D)
            x = torch.cat([x, prompts.reshape(-1, x.shape[1])])
            y = torch.cat([y, torch.arange(text.shape[0]).repeat(prompts.shape[0])])
            weights = 100.0 * text  # the zero-shot head
        bias = torch.zeros(text.shape[0])
        x_val, _ = validation.normalised()
        fits = {}
        for penalty in PENALTIES:  # strong to weak, each warm-started from the last
            weights, bias = fits[penalty] = fit_logistic(x, y, weights, bias, penalty, self.evaluations)
        best, val_acc = search(
            list(PENALTIES), lambda p: accuracy(torch.addmm(fits[p][1], x_val, fits[p][0].T), validation.labels)
        )
        weights, bias = fits[best]
        hparams = {
            **self.hparams(),
            "penalty": best,
            "validation_acc1": val_acc,
            "augmentation": augmentation(support, self.augment),
        }
        classifier = Classifier(weights, target.class_names, 1.0, bias=bias, method=self.name, hparams=hparams)
        return Fit(classifier)


@register_method
@dataclass
class CrossModalLinearProbe(LinearProbe):
    name = "cross-modal-linear-probe"
    summary = "Linear probe with class text features as extra samples, initialised from the zero-shot head"
    cross_modal: ClassVar[bool] = True
