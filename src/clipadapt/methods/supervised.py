"""What the few-shot methods share: their training samples, and the search of a hyperparameter on validation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError
from clipadapt.features.featureset import FeatureSet

T = TypeVar("T")
S = TypeVar("S")  # a score: anything ordered, e.g. a float or a tuple compared lexicographically


def require_labelled(method: str, support: FeatureSet | None, validation: FeatureSet | None) -> None:
    for name, part in (("support", support), ("validation", validation)):
        if part is None or part.labels is None or len(part) == 0:
            raise ClipAdaptError(f"{method} is few-shot: it needs a labelled {name} set (run it with --shots K)")


def training_samples(support: FeatureSet, augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled training samples: each support image, and each of its stored augmented views.

    Views (``view_features``, extracted once through the feature store) stand for the paper's augmented
    training images; a feature file without views trains on the images alone.

    Returns:
        (M, D) L2-normalised features and (M,) labels, M = N·(1 + V).
    """
    x, _ = support.normalised()
    y = support.labels
    assert y is not None
    if augment and support.view_features is not None:
        views = F.normalize(support.view_features.float(), dim=-1)  # (N, V, D)
        x = torch.cat([x, views.reshape(-1, x.shape[1])])
        y = torch.cat([y, y.repeat_interleave(views.shape[1])])
    return x, y


def augmentation(support: FeatureSet, augment: bool = True) -> str:
    """What :func:`training_samples` trained on, for the result's hparams."""
    if augment and support.view_features is not None:
        kind = f" ({support.view_augment})" if support.view_augment else ""
        return f"{support.view_features.shape[1]} view(s) per image{kind}"
    return "none (no view features)" if augment else "off"


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


def search(candidates: Sequence[T], score: Callable[[T], S]) -> tuple[T, S]:
    """The candidate with the highest ``score`` (the first one on ties) and that score."""
    if not candidates:
        raise ValueError("nothing to search")
    best, best_score = candidates[0], score(candidates[0])
    for candidate in candidates[1:]:
        value = score(candidate)
        if value > best_score:
            best, best_score = candidate, value
    return best, best_score


def log_grid(low: float, high: float, steps: int) -> list[float]:
    """``steps`` values from ``low`` to ``high`` inclusive, evenly spaced in log, rounded to 6 decimals."""
    values = torch.logspace(math.log10(low), math.log10(high), steps, dtype=torch.float64)
    return [round(v, 6) for v in values.tolist()]


def linspace_grid(low: float, high: float, steps: int) -> list[float]:
    """``steps`` values from ``low`` to ``high`` inclusive, rounded to 6 decimals (readable in hparams)."""
    return [round(v, 6) for v in torch.linspace(low, high, steps).tolist()]
