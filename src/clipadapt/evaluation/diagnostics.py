"""Label-free diagnostics of a run: what can be told about a target set and a method's predictions without
a single label.

- ``images``, ``classes``: the set's size and the number of class names given;
- ``zeroshot_effective_classes`` and ``effective_classes``: exp of the entropy of the histogram of
  zero-shot's and the method's predicted classes: C when predictions spread evenly over all C classes, K
  when they fall evenly on K of them (a set of a few classes, or a method that collapses);
- ``agreement_with_zeroshot``: the share of images whose predicted class is zero-shot's.

Methods declare the assumption they make about the target set and read these diagnostics to say when it
does not hold (:meth:`clipadapt.methods.base.Method.assumption_warning`, :mod:`clipadapt.methods.assumptions`).
"""

from __future__ import annotations

import math

import torch


def effective_classes(predictions: torch.Tensor, num_classes: int) -> float:
    """exp(entropy) of the histogram of ``predictions`` (N,) over ``num_classes`` classes, in [1, C]."""
    counts = torch.bincount(predictions.cpu(), minlength=num_classes).double()
    p = counts[counts > 0] / counts.sum()
    return float(math.exp(float(-(p * p.log()).sum())))


def label_free_diagnostics(predictions: torch.Tensor, zeroshot: torch.Tensor, c: int) -> dict[str, float | int]:
    """The diagnostics of one run from its (N,) predicted classes and zero-shot's on the same rows."""
    predictions, zeroshot = predictions.cpu(), zeroshot.cpu()
    return {
        "images": int(predictions.shape[0]),
        "classes": int(c),
        "zeroshot_effective_classes": round(effective_classes(zeroshot, c), 3),
        "effective_classes": round(effective_classes(predictions, c), 3),
        "agreement_with_zeroshot": round(float((predictions == zeroshot).double().mean()), 4),
    }
