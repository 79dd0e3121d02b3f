"""The HTML report: accuracy by method, per-class accuracy, confusion matrices, prediction counts,
pseudo-labels over epochs and a 2-D view of the modality gap, per dataset.

Runs are added as they finish (:meth:`Report.add` keeps predictions and a sample of embeddings, not the
logits) and the page is written once at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipadapt.evaluation.runner import Prediction
from clipadapt.report.html import dataset_views, write_report
from clipadapt.report.views import DatasetView, RunView, run_view


class Report:
    def __init__(self, title: str = "clipadapt report") -> None:
        self.title = title
        self.runs: list[tuple[str, list[str], RunView]] = []

    def add(self, record: dict[str, Any], prediction: Prediction) -> None:
        name = " · ".join(str(record[k]) for k in ("dataset", "model", "pretrained") if record.get(k))
        self.runs.append((name, prediction.test.class_names, run_view(record, prediction)))

    def write(self, path: str | Path) -> Path:
        return write_report(dataset_views(self.runs), path, self.title)


__all__ = ["DatasetView", "Report", "RunView", "run_view", "write_report"]
