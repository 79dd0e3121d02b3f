"""Scoring and result files."""

from clipadapt.evaluation.metrics import classification_metrics
from clipadapt.evaluation.results import output_path, read_results, render_markdown, render_pivot, write_table
from clipadapt.evaluation.runner import Prediction, evaluate, run_method

__all__ = [
    "Prediction",
    "classification_metrics",
    "evaluate",
    "output_path",
    "read_results",
    "render_markdown",
    "render_pivot",
    "run_method",
    "write_table",
]
