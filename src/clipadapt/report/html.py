"""The self-contained HTML report (figures inlined as PNG data, also written beside it as files)."""

from __future__ import annotations

import base64
import html
import io
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from clipadapt import __version__
from clipadapt.io import atomic_open
from clipadapt.report import figures
from clipadapt.report.views import DatasetView, RunView

SECTIONS: list[tuple[str, str, Callable[[DatasetView], Figure | None], str]] = [
    ("per-class", "Per-class accuracy, before and after", figures.per_class_figure,
     "Top-1 % on each class for zero-shot CLIP (before) and each method (after)."),
    ("confusion", "Confusion matrices", figures.confusion_figure,
     "Rows: true class; columns: predicted class; each row sums to 1."),
    ("prediction-counts", "Predictions per class", figures.counts_figure,
     "How many images each method assigns to each class, beside the true counts: zero-shot CLIP piles "
     "images onto a few classes; InMaP's Sinkhorn balancing and CLIP-Enhance's concentrations spread them."),
    ("pseudo-labels", "Pseudo-labels over epochs", figures.pseudo_label_figure,
     "Top-1 % of the pseudo-labels each epoch trains on (labels read for this plot only, never to select "
     "anything), and each method's agreement: ReCLIP's two sides agreeing (label sharing), FAIR's strong "
     "views predicting their pseudo-label."),
    ("projection", "Image and text features in 2-D", figures.projection_figure,
     "Dots: test images (coloured by class); stars: class vectors. One PCA plane, fitted on zero-shot's "
     "images and text prototypes, for every panel: the modality gap separates them before adaptation."),
]  # fmt: skip
EMPTY = {
    "per-class": "No labels: per-class accuracy needs them.",
    "confusion": "No labels: confusion matrices need them.",
    "pseudo-labels": "No method in this run records per-epoch pseudo-labels (ReCLIP and FAIR do).",
}
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e5e5e5; }
th { text-align: left; background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #08780f; } .down { color: #b3261e; } .note { color: #666; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; } nav a { margin-right: 1em; }
"""


def slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower() or "dataset"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _accuracy_table(view: DatasetView) -> str:
    before = view.before
    base = before.record["metrics"].get("acc1") if before is not None else None
    c = len(view.classnames)
    head = ["method", "setting", "shots", "seed", "top-1 %", "Δ vs zero-shot", "top-5 %", "mean per-class recall %",
            "classes never predicted", "seconds"]  # fmt: skip
    saved = any("classifier_metrics" in run.record for run in view.runs)
    if saved:
        head.insert(5, "saved classifier top-1 %")
    rows = []
    for run in view.runs:
        m = run.record["metrics"]
        acc1 = m.get("acc1")
        delta = "" if acc1 is None or base is None or run is before else 100 * (acc1 - base)
        tone = "" if delta == "" or round(delta, 2) == 0 else "up" if delta > 0 else "down"
        delta_cell = "" if delta == "" else f'<td class="num {tone}">{delta:+.2f}</td>'
        cells = [
            f"<td>{html.escape(run.method)}</td>",
            f"<td>{html.escape(str(run.record['setting']))}</td>",
            f'<td class="num">{run.record.get("shots") or ""}</td>',
            f'<td class="num">{run.record.get("seed")}</td>',
            *(f'<td class="num">{_pct(m.get(k))}</td>' for k in ("acc1",)),
            *([_saved_cell(run)] if saved else []),
            delta_cell or "<td></td>",
            *(f'<td class="num">{_pct(m.get(k))}</td>' for k in ("acc5", "mean_per_class_recall")),
            f'<td class="num">{int((np.bincount(run.predictions, minlength=c) == 0).sum())}</td>',
            f'<td class="num">{run.record["seconds"]:.2f}</td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    labelled = any(r.labels is not None for r in view.runs)
    note = "" if labelled else '<p class="note">No labels: accuracy unavailable.</p>'
    if saved:
        note += (
            '<p class="note">Top-1 of a transductive method is that of its own predictions on these images; '
            "the saved classifier, which <code>clipadapt predict</code> applies, gives the next column on the "
            "same images. Predictions per class below are the transductive ones.</p>"
        )
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"{note}<table><tr>{header}</tr>{''.join(rows)}</table>"


def _diagnostics_table(view: DatasetView) -> str:
    """The label-free runs' diagnostics (what can be told without labels) and their warnings, if any."""
    runs = [run for run in view.runs if "diagnostics" in run.record]
    if not runs:
        return ""
    head = ["method", "images", "class names", "effective classes (zero-shot)", "effective classes (method)",
            "agreement with zero-shot %"]  # fmt: skip
    rows, warnings = [], []
    for run in runs:
        d = run.record["diagnostics"]
        cells = [html.escape(run.method), d["images"], d["classes"], f"{d['zeroshot_effective_classes']:.1f}",
                 f"{d['effective_classes']:.1f}", _pct(d["agreement_with_zeroshot"])]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        if "warning" in run.record:
            warnings.append(
                f'<p class="note warning">{html.escape(run.method)}: {html.escape(run.record["warning"])}</p>'
            )
    header = "".join(f"<th>{h}</th>" for h in head)
    return (
        '<h4>Label-free diagnostics</h4><p class="note">Effective classes: exp of the entropy of the predicted-class '
        "histogram (K when predictions fall evenly on K classes).</p>"
        f"<table><tr>{header}</tr>{''.join(rows)}</table>{''.join(warnings)}"
    )


def _saved_cell(run: RunView) -> str:
    """The saved classifier's top-1 on the run's images (transductive runs), else the run's own."""
    own = run.record.get("classifier_metrics")
    value = own.get("acc1") if own is not None else run.record["metrics"].get("acc1")
    return f'<td class="num">{_pct(value)}</td>'


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def write_report(views: list[DatasetView], path: str | Path, title: str = "clipadapt report") -> Path:
    """Write the HTML report to ``path`` and its figures to ``<path stem>_figures/``; returns ``path``."""
    path = Path(path)
    figure_dir = path.with_name(f"{path.stem}_figures")
    figure_dir.mkdir(parents=True, exist_ok=True)
    body = []
    for view in views:
        key = slug(view.name)
        parts = [
            f'<section class="dataset" id="{key}"><h2>{html.escape(view.name)}</h2>',
            f'<p class="note">{len(view.classnames)} classes; {len(view.runs)} run(s).</p>',
            f'<section data-section="accuracy"><h3>Accuracy by method</h3>{_accuracy_table(view)}'
            f"{_diagnostics_table(view)}</section>",
        ]
        for section, heading, draw, caption in SECTIONS:
            fig = draw(view)
            if fig is None:
                content = f'<p class="note">{EMPTY.get(section, "Nothing to show.")}</p>'
            else:
                png = _png(fig)
                (figure_dir / f"{key}-{section}.png").write_bytes(png)
                data = base64.b64encode(png).decode()
                content = f'<p class="note">{caption}</p><img alt="{heading}" src="data:image/png;base64,{data}">'
            parts.append(f'<section data-section="{section}"><h3>{heading}</h3>{content}</section>')
        body.append("\n".join(parts) + "</section>")
    nav = " ".join(f'<a href="#{slug(v.name)}">{html.escape(v.name)}</a>' for v in views)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="note">clipadapt {__version__}, {time.strftime("%Y-%m-%d %H:%M")}. Accuracy is on the test rows; label-free
methods never saw a label. Figures also in <code>{html.escape(figure_dir.name)}/</code>.</p>
<nav>{nav}</nav>
{"".join(body)}
</body></html>
"""
    with atomic_open(path) as fh:
        fh.write(page)
    return path


def dataset_views(runs: list[tuple[str, list[str], RunView]]) -> list[DatasetView]:
    """Group (dataset name, class names, run view) triples by dataset, keeping first-seen order."""
    views: dict[str, DatasetView] = {}
    for name, classnames, run in runs:
        views.setdefault(name, DatasetView(name, classnames)).runs.append(run)
    return list(views.values())
