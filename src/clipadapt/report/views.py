"""What a report shows of each run, distilled from the run's prediction (no logits kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipadapt.evaluation.runner import Prediction
from clipadapt.io import atomic_path

MAX_POINTS = 1000  # images drawn in the 2-D projection


@dataclass
class RunView:
    record: dict[str, Any]
    predictions: np.ndarray  # (N,) predicted class of each test row
    labels: np.ndarray | None  # (N,) true classes, when known
    image_points: np.ndarray  # (n, D) unit image embeddings of a sample of the test rows, as the classifier sees them
    point_classes: np.ndarray  # (n,) their true class (predicted when unlabelled)
    class_points: np.ndarray  # (C, D) unit class vectors

    @property
    def method(self) -> str:
        return str(self.record["method"])


@dataclass
class DatasetView:
    name: str
    classnames: list[str]
    runs: list[RunView] = field(default_factory=list)

    @property
    def before(self) -> RunView | None:
        """The zero-shot run: what the adapted runs are compared with."""
        return next((r for r in self.runs if r.method == "zeroshot"), None)

    def figure_runs(self) -> list[RunView]:
        """One run per (method, shots), the first seed of each, zero-shot first."""
        seen: dict[tuple[str, Any], RunView] = {}
        for run in self.runs:
            seen.setdefault((run.method, run.record.get("shots")), run)
        return sorted(seen.values(), key=lambda r: r.method != "zeroshot")


@torch.no_grad()
def run_view(record: dict[str, Any], prediction: Prediction, seed: int = 0) -> RunView:
    """Predictions, labels and a sample of embedded test rows of one run."""
    test, classifier = prediction.test, prediction.classifier
    predictions = prediction.logits.argmax(dim=1).numpy()
    labels = None if test.labels is None else test.labels.numpy()
    n = len(test)
    sample = np.sort(np.random.default_rng(seed).permutation(n)[:MAX_POINTS])
    features = classifier.rows_features(test.subset(sample))
    return RunView(
        record=record,
        predictions=predictions,
        labels=labels,
        image_points=classifier.embed(features).numpy(),
        point_classes=(labels if labels is not None else predictions)[sample],
        class_points=classifier.class_vectors().numpy(),
    )


VIEW_ARRAYS = ("predictions", "image_points", "point_classes", "class_points")


def save_view(view: RunView, classnames: list[str], path: str | Path) -> None:
    """Write what the report needs of one run (not its record, which is the result JSON) to ``path`` (.npz),
    so that a later ``eval --skip_existing --report`` can show the run without running it again."""
    arrays = {k: getattr(view, k) for k in VIEW_ARRAYS}
    if view.labels is not None:
        arrays["labels"] = view.labels
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, classnames=np.array(classnames), **arrays)


def load_view(path: str | Path, record: dict[str, Any]) -> tuple[list[str], RunView]:
    """The class names and run view :func:`save_view` wrote, with the run's ``record``."""
    with np.load(path, allow_pickle=False) as z:
        labels = z["labels"] if "labels" in z.files else None
        view = RunView(record=record, labels=labels, **{k: z[k] for k in VIEW_ARRAYS})
        return [str(c) for c in z["classnames"]], view
