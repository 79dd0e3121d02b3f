"""Scoring and result files."""

from clipadapt.evaluation.results import read_results, render_markdown, render_pivot, write_table
from clipadapt.evaluation.runner import Prediction, classifier_metrics, evaluate, evaluate_protocol, run_method
from clipadapt.kernels.metrics import classification_metrics
from clipadapt.paths import output_path

__all__ = [
    "Prediction",
    "classification_metrics",
    "classifier_metrics",
    "evaluate",
    "evaluate_protocol",
    "output_path",
    "read_results",
    "render_markdown",
    "render_pivot",
    "run_method",
    "write_table",
]
