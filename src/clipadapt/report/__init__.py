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
from clipadapt.report.views import DatasetView, RunView, load_view, run_view, save_view


def section_name(record: dict[str, Any]) -> str:
    """The report section a run belongs to: its dataset and backbone."""
    return " · ".join(str(record[k]) for k in ("dataset", "model", "pretrained") if record.get(k))


class Report:
    def __init__(self, title: str = "clipadapt report") -> None:
        self.title = title
        self.runs: list[tuple[str, list[str], RunView]] = []

    def add(self, record: dict[str, Any], prediction: Prediction, keep: str | Path | None = None) -> None:
        """Add a finished run; with ``keep``, also save its view there (:func:`save_view`)."""
        view = run_view(record, prediction)
        self.add_view(record, prediction.test.class_names, view)
        if keep is not None:
            save_view(view, prediction.test.class_names, keep)

    def add_view(self, record: dict[str, Any], classnames: list[str], view: RunView) -> None:
        self.runs.append((section_name(record), classnames, view))

    def write(self, path: str | Path) -> Path:
        return write_report(dataset_views(self.runs), path, self.title)


__all__ = ["DatasetView", "Report", "RunView", "load_view", "run_view", "save_view", "write_report"]
