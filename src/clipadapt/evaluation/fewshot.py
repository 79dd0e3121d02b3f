"""The few-shot protocol (CoOp / Tip-Adapter): K labelled images per class, a validation split, the test rows.

With a ``split`` in the features, the K shots and the validation images come from the ``train`` rows and
the ``test`` rows are scored. Without one (e.g. the WHU-RS19 files), K shots and the validation images are
drawn from all rows and every other row is scored. Validation has min(K, 4) images per class, as
in CoOp; every hyperparameter search of a few-shot method uses it, never the test rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from clipadapt.errors import ClipAdaptError, MethodUnavailable
from clipadapt.features.featureset import FeatureSet

TRAIN_SPLIT, TEST_SPLIT = "train", "test"


class FewShotSplit(NamedTuple):
    train: torch.Tensor  # (C·K,) row indices of the labelled shots
    validation: torch.Tensor  # (C·min(K, 4),) row indices used for model selection
    test: torch.Tensor  # row indices scored


def test_rows(split: np.ndarray, dataset: str = "") -> np.ndarray:
    """(N,) bool: the rows to score, those of the ``test`` split; an error when there are none."""
    mask = np.asarray(split) == TEST_SPLIT
    if not mask.any():
        found = ", ".join(sorted(set(np.asarray(split).tolist())))
        of = f" of {dataset!r}" if dataset else ""
        raise ClipAdaptError(f"features{of} have splits ({found}) but no '{TEST_SPLIT}' rows")
    return mask


def validation_shots(shots: int) -> int:
    return min(shots, 4)


def sample_few_shot(
    labels: torch.Tensor,
    shots: int,
    seed: int,
    split: np.ndarray | None = None,
    classnames: list[str] | None = None,
) -> FewShotSplit:
    """Draw ``shots`` train and min(shots, 4) validation rows per class, reproducibly from ``seed``.

    Args:
        labels: (N,) class index of every row.
        split: optional (N,) "train"/"test" strings; then shots come from train rows and test rows are scored.
        classnames: optional (C,) names, to name a class that has too few rows.
    Returns:
        disjoint train, validation and test indices (sorted within each).
    """
    if shots < 1:
        raise ClipAdaptError(f"--shots must be at least 1, not {shots}")
    if split is None:
        pool, scored = torch.ones(len(labels), dtype=torch.bool), None
    else:
        pool = torch.from_numpy(np.asarray(split) == TRAIN_SPLIT)
        scored = torch.from_numpy(test_rows(split))
    generator = torch.Generator().manual_seed(seed)
    wanted = shots + validation_shots(shots)
    train, validation = [], []
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        rows = torch.nonzero(pool & (labels == c)).squeeze(1)
        if len(rows) < wanted:
            where = "train rows" if split is not None else "rows"
            name = f"class {classnames[c]!r}" if classnames is not None else f"class {c}"
            raise MethodUnavailable(
                f"{name} has {len(rows)} labelled {where}; {shots}-shot needs {wanted} "
                f"({shots} to train, {validation_shots(shots)} to validate)"
            )
        drawn = rows[torch.randperm(len(rows), generator=generator)[:wanted]]
        train.append(drawn[:shots])
        validation.append(drawn[shots:])
    train_idx, val_idx = torch.cat(train).sort().values, torch.cat(validation).sort().values
    if scored is None:
        scored = torch.ones(len(labels), dtype=torch.bool)
        scored[train_idx] = False
        scored[val_idx] = False
    return FewShotSplit(train_idx, val_idx, torch.nonzero(scored).squeeze(1))


def few_shot_sets(features: FeatureSet, shots: int, seed: int) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    """(support, validation, test) FeatureSets of :func:`sample_few_shot`; support and validation keep labels."""
    if features.labels is None:
        raise ClipAdaptError("few-shot runs need labelled features (the shots), and these have no labels")
    rows = sample_few_shot(features.labels.cpu(), shots, seed, features.split, features.class_names)
    return features.subset(rows.train), features.subset(rows.validation), features.subset(rows.test)
