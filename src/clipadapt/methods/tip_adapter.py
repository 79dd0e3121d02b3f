"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a key-value cache of the few-shot features.

Keys are the L2-normalised support features (the mean over each image and its stored augmented views,
as the official code averages its augmented epochs), values their one-hot labels. For a test feature x̂:

    logits = 100 · x̂ t̂ᵀ + α · exp(−β (1 − x̂ Kᵀ)) L

Tip-Adapter is training-free; Tip-Adapter-F makes the keys learnable (AdamW, lr 1e-3, eps 1e-4, cosine
schedule, 20 epochs, batch 256, at α = β = 1) on the support images and their views. Both then choose
(α, β) on the validation split only (the official ImageNet script searches on the test features; never here).

The grid (docs/faithfulness.md): the official search is per dataset, β_i = 0.1 + i·(S_β − 0.1)/200 and
α_j = 0.1 + j·(S_α − 0.1)/20 with [S_β, S_α] from [7, 3] (ImageNet, Pets, UCF) to [50, 50] (Flowers), and
initial α ∈ {1.17, 2, 3, 5, 10}, β = 1. A dataset-agnostic grid must cover all of them: 200 β and 50 α
spaced evenly in log between 0.1 and 50 (steps of 3 % and 13 %: finer than the official grids where they are
fine, i.e. at small values), plus the official initial values. Ties go to the first best in β-major,
α-minor ascending order, as the official search. ``grid="linear"`` with ``beta_max``/``alpha_max`` is the
official per-dataset formula (e.g. ``beta_max=7 alpha_max=3``, this module's earlier default).

Tip-Adapter-F keeps its last epoch's keys (the official script keeps the epoch of best *test* accuracy) and
trains at α = β = 1 (the official initial α differs per dataset, 1.17 most often).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.supervised import augmentation, log_grid, require_labelled, training_samples

OFFICIAL_INITIAL_ALPHAS = (1.17, 2.0, 3.0, 5.0, 10.0)  # init_alpha of the official per-dataset configs
OFFICIAL_INITIAL_BETAS = (1.0,)


def cache_logits(
    affinity: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    beta: float,
    scratch: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """exp(−β (1 − A)) L without forming the one-hot L.

    Args:
        affinity: (N, M) cosine of each feature to each key; labels: (M,) the keys' classes;
        scratch: optional (N, M) and out: optional (N, C) buffers to write into (the α/β search reuses them:
            a fresh (N, M) tensor per β costs more in page faults than the exponentials).
    Returns:
        (N, C).
    """
    if scratch is None:
        weights = torch.exp(-beta * (1 - affinity))
    else:
        weights = torch.sub(affinity, 1, out=scratch).mul_(beta).exp_()
    out = affinity.new_zeros(affinity.shape[0], num_classes) if out is None else out.zero_()
    return out.index_add_(1, labels, weights)


@dataclass
class CacheClassifier(Classifier):
    """Zero-shot logits plus Tip-Adapter's cache term (keys (M, D), key labels (M,), α, β)."""

    keys: torch.Tensor | None = None
    key_labels: torch.Tensor | None = None
    alpha: float = 1.0
    beta: float = 1.0

    @torch.no_grad()
    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        x = self.unit(image_features)
        assert self.keys is not None and self.key_labels is not None
        cache = cache_logits(x @ self.keys.T, self.key_labels, self.weights.shape[0], self.beta)
        return self.logit_scale * x @ self.weights.T + self.alpha * cache


@torch.no_grad()
def grid_accuracies(
    x: torch.Tensor,
    labels: torch.Tensor,
    text: torch.Tensor,
    keys: torch.Tensor,
    key_labels: torch.Tensor,
    betas: list[float],
    alphas: list[float],
) -> torch.Tensor:
    """(B, A) top-1 of 100 x̂ t̂ᵀ + α · cache_β on (x, labels) for every β and α, on the device (nothing
    inside waits for it)."""
    zeroshot = 100.0 * x @ text.T
    affinity = x @ keys.T
    scratch, cache, logits = torch.empty_like(affinity), torch.empty_like(zeroshot), torch.empty_like(zeroshot)
    accuracies = zeroshot.new_empty(len(betas), len(alphas))
    for i, beta in enumerate(betas):
        cache_logits(affinity, key_labels, text.shape[0], beta, scratch, cache)
        for j, alpha in enumerate(alphas):
            predicted = torch.add(zeroshot, cache, alpha=alpha, out=logits).argmax(dim=1)
            accuracies[i, j] = (predicted == labels).float().mean()
    return accuracies


def best_alpha_beta(accuracies: torch.Tensor, betas: list[float], alphas: list[float]) -> tuple[float, float, float]:
    """α, β and the accuracy of the best entry of (B, A) :func:`grid_accuracies` — validation data only — the
    first best in β-major, α-minor order (one wait for the device)."""
    i, j = divmod(int(accuracies.argmax()), len(alphas))  # argmax: the first of equal maxima, row-major
    return alphas[j], betas[i], float(accuracies[i, j])


def cache_keys(support: FeatureSet, augment: bool) -> torch.Tensor:
    """(N, D) normalised mean of each support image's feature and its stored views' features."""
    x, _ = support.normalised()
    if augment and support.view_features is not None:
        views = F.normalize(support.view_features.float(), dim=-1)
        x = torch.cat([x[:, None, :], views], dim=1).mean(1)
    return F.normalize(x, dim=1)


@register_method
@dataclass
class TipAdapter(Method):
    name = "tip-adapter"
    setting = "few-shot"
    label_free = False
    summary = "Tip-Adapter: training-free cache of the few-shot features, (α, β) chosen on validation"
    paper = (
        "Zhang et al., Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification"
        " (ECCV 2022, arXiv:2207.09519)"
    )
    code = "https://github.com/gaopengcuhk/Tip-Adapter"
    faithfulness = "tip-adapter"

    grid: Literal["log", "linear"] = "log"  # log: covers every official range; linear: the official formula
    beta_steps: int = 200  # β grid over [0.1, beta_max]
    beta_max: float = 50.0
    alpha_steps: int = 50  # α grid over [0.1, alpha_max] (the official linear grid has 20)
    alpha_max: float = 50.0
    augment: bool = True

    def search_grid(self) -> tuple[list[float], list[float]]:
        """The ascending β and α values the validation search tries."""
        if self.grid == "linear":  # the official per-dataset formula: i < steps, so the maximum itself is not tried
            return (
                [round(0.1 + i * (self.beta_max - 0.1) / self.beta_steps, 6) for i in range(self.beta_steps)],
                [round(0.1 + j * (self.alpha_max - 0.1) / self.alpha_steps, 6) for j in range(self.alpha_steps)],
            )
        betas = {*log_grid(0.1, self.beta_max, self.beta_steps), *OFFICIAL_INITIAL_BETAS}
        alphas = {*log_grid(0.1, self.alpha_max, self.alpha_steps), *OFFICIAL_INITIAL_ALPHAS}
        return sorted(betas), sorted(alphas)

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        require_labelled(self.name, support, validation)
        assert support is not None and support.labels is not None
        keys = self.train_keys(support)
        return self.finish(target, support, validation, keys)

    def train_keys(self, support: FeatureSet) -> torch.Tensor:
        return cache_keys(support, self.augment)

    def finish(self, target: FeatureSet, support: FeatureSet, validation: FeatureSet | None, keys: torch.Tensor) -> Fit:
        assert validation is not None and validation.labels is not None and support.labels is not None
        _, text = support.normalised()
        betas, alphas = self.search_grid()
        accuracies = grid_accuracies(validation.normalised()[0], validation.labels, text, keys, support.labels, betas,
                                     alphas)  # fmt: skip
        alpha, beta, val_acc = best_alpha_beta(accuracies, betas, alphas)
        hparams = {
            **self.hparams(),
            "alpha": alpha,
            "beta": beta,
            "validation_acc1": val_acc,
            "augmentation": augmentation(support, self.augment),
        }
        classifier = CacheClassifier(
            text, target.class_names, 100.0, method=self.name, hparams=hparams,
            keys=keys, key_labels=support.labels, alpha=alpha, beta=beta,
        )  # fmt: skip
        return Fit(classifier)


@register_method
@dataclass
class TipAdapterF(TipAdapter):
    name = "tip-adapter-f"
    summary = "Tip-Adapter-F: the cache keys fine-tuned (AdamW, cosine), then (α, β) chosen on validation"
    paper = "Zhang et al., Tip-Adapter (ECCV 2022, arXiv:2207.09519): the fine-tuned cache"
    code = "https://github.com/gaopengcuhk/Tip-Adapter"
    faithfulness = "tip-adapter"

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    train_alpha: float = 1.0
    train_beta: float = 1.0

    def train_keys(self, support: FeatureSet) -> torch.Tensor:
        assert support.labels is not None
        keys = cache_keys(support, self.augment).requires_grad_(True)
        x, y = training_samples(support, self.augment)
        _, text = support.normalised()
        zeroshot = 100.0 * x @ text.T
        batches = math.ceil(len(x) / self.batch_size)
        optimiser = torch.optim.AdamW([keys], lr=self.lr, eps=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, self.epochs * batches)
        with torch.enable_grad():
            for _ in range(self.epochs):
                for batch in torch.randperm(len(x)).to(x.device).split(self.batch_size):  # seeded by --seed
                    cache = cache_logits(x[batch] @ keys.T, support.labels, text.shape[0], self.train_beta)
                    loss = F.cross_entropy(zeroshot[batch] + self.train_alpha * cache, y[batch])
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    schedule.step()
        return keys.detach()
