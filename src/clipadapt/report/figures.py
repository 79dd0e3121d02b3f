"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend state).

Each function takes a :class:`DatasetView` and returns a ``Figure``, or ``None`` with nothing to draw.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from clipadapt.report.views import DatasetView, RunView

MANY_CLASSES = 40  # above this, per-class figures show distributions instead of one entry per class


def confusion(run: RunView, num_classes: int) -> np.ndarray:
    """(C, C) row-normalised confusion matrix (rows: true class, columns: predicted)."""
    assert run.labels is not None
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (run.labels, run.predictions), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def per_class_accuracy(run: RunView, num_classes: int) -> np.ndarray:
    """(C,) accuracy on each class (NaN for classes absent from the labels)."""
    absent = np.bincount(run.labels, minlength=num_classes) == 0
    return np.where(absent, np.nan, np.diag(confusion(run, num_classes)))


def pca_basis(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and the top-2 principal directions (D, 2) of (M, D) points."""
    mean = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - mean, full_matrices=False)
    return mean, vt[:2].T


def _grid(n: int, width: float = 3.2) -> tuple[Figure, list]:
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, width * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def class_colours(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(n,) class indices → (n, 4) RGBA: a qualitative palette up to 20 classes, a continuous one beyond."""
    from matplotlib import colormaps

    if num_classes <= 20:
        return colormaps["tab10" if num_classes <= 10 else "tab20"](classes)
    return colormaps["turbo"](classes / (num_classes - 1))


def _title(run: RunView) -> str:
    shots = run.record.get("shots")
    return run.method + (f" ({shots}-shot)" if shots else "")


def per_class_figure(view: DatasetView) -> Figure | None:
    runs = [r for r in view.figure_runs() if r.labels is not None]
    if not runs:
        return None
    c = len(view.classnames)
    accuracy = np.stack([per_class_accuracy(r, c) for r in runs])  # (R, C)
    if c <= MANY_CLASSES:
        fig = Figure(figsize=(1.2 + 0.9 * len(runs), 1.0 + 0.32 * c), layout="constrained")
        ax = fig.subplots()
        image = ax.imshow(100 * accuracy.T, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for (j, i), value in np.ndenumerate(100 * accuracy):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7, color="w" if value < 60 else "k")
        ax.set_xticks(range(len(runs)), [_title(r) for r in runs], rotation=45, ha="right")
        ax.set_yticks(range(c), view.classnames, fontsize=7)
        fig.colorbar(image, ax=ax, label="top-1 % on the class")
    else:
        fig = Figure(figsize=(7, 4), layout="constrained")
        ax = fig.subplots()
        for run, acc in zip(runs, accuracy, strict=True):
            width = 2 if run.method == "zeroshot" else 1
            ax.plot(100 * np.sort(acc[~np.isnan(acc)])[::-1], label=_title(run), lw=width)
        ax.set_xlabel("classes, sorted by their accuracy")
        ax.set_ylabel("top-1 % on the class")
        ax.legend(fontsize=7)
    return fig


def confusion_figure(view: DatasetView) -> Figure | None:
    runs = [r for r in view.figure_runs() if r.labels is not None]
    if not runs:
        return None
    c = len(view.classnames)
    fig, axes = _grid(len(runs))
    for ax, run in zip(axes, runs, strict=True):
        ax.imshow(confusion(run, c), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(_title(run), fontsize=9)
        if c <= MANY_CLASSES:  # every class by name
            size = 6 if c <= 20 else 4
            ax.set_xticks(range(c), view.classnames, rotation=90, fontsize=size)
            ax.set_yticks(range(c), view.classnames, fontsize=size)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("true", fontsize=7)
        else:  # class indices, in the order of the class list
            ticks = np.linspace(0, c - 1, 6).round().astype(int)
            ax.set_xticks(ticks, ticks, fontsize=6)
            ax.set_yticks(ticks, ticks, fontsize=6)
            ax.set_xlabel("predicted class (index in the class list)", fontsize=7)
            ax.set_ylabel("true class (index)", fontsize=7)
    return fig


def counts_figure(view: DatasetView) -> Figure:
    """Images predicted per class by each run, beside the true counts (bars) when labels exist."""
    runs = view.figure_runs()
    c = len(view.classnames)
    truth = next((np.bincount(r.labels, minlength=c) for r in runs if r.labels is not None), None)
    order = np.argsort(-truth, kind="stable") if truth is not None else np.arange(c)
    fig = Figure(figsize=(max(6, min(14, 0.35 * c + 3)), 3.8), layout="constrained")
    ax = fig.subplots()
    if truth is not None:
        ax.bar(range(c), truth[order], color="0.85", label="true count")
    for run in runs:
        counts = np.bincount(run.predictions, minlength=c)[order]
        ax.plot(range(c), counts, marker="o" if c <= MANY_CLASSES else None, ms=3, label=_title(run),
                lw=2.2 if run.method == "zeroshot" else 1)  # fmt: skip
    if c <= MANY_CLASSES:
        ax.set_xticks(range(c), [view.classnames[i] for i in order], rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel("classes (sorted by true count)" if truth is not None else "classes")
    ax.set_ylabel("images predicted")
    ax.legend(fontsize=7, ncol=2)
    return fig


def pseudo_label_figure(view: DatasetView) -> Figure | None:
    """Per-epoch pseudo-label accuracy (and agreement) of the runs that record them."""
    series = [(run, key, run.record["history"][key]) for run in view.figure_runs()
              for key in ("pseudo_label_acc1", "agreement") if run.record.get("history", {}).get(key)]  # fmt: skip
    if not series:
        return None
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.subplots()
    for run, key, values in series:
        label = f"{_title(run)}: {'pseudo-label top-1' if key == 'pseudo_label_acc1' else 'agreement'}"
        ax.plot(range(1, len(values) + 1), 100 * np.asarray(values), marker="o", ms=3,
                ls="-" if key == "pseudo_label_acc1" else "--", label=label)  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("%")
    ax.legend(fontsize=7)
    return fig


def projection_figure(view: DatasetView) -> Figure | None:
    """Image embeddings (dots) and class vectors (stars) in one 2-D PCA plane fitted on the zero-shot
    run's images and text prototypes: the modality gap separates them before adaptation."""
    runs = view.figure_runs()
    reference = view.before or runs[0]
    mean, basis = pca_basis(np.concatenate([reference.image_points, reference.class_points]))
    c = len(view.classnames)
    fig, axes = _grid(len(runs))
    for ax, run in zip(axes, runs, strict=True):
        images, classes = (run.image_points - mean) @ basis, (run.class_points - mean) @ basis
        ax.scatter(images[:, 0], images[:, 1], s=4, alpha=0.5, c=class_colours(run.point_classes, c), linewidths=0)
        ax.scatter(classes[:, 0], classes[:, 1], s=90, marker="*", c=class_colours(np.arange(c), c),
                   edgecolors="k", linewidths=0.6)  # fmt: skip
        ax.set_title(("before: " if run is reference else "") + _title(run), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=_projection_legend(view.classnames), loc="outside right upper", fontsize=7)
    return fig


def _projection_legend(classnames: list[str]) -> list:
    """Marker meanings, then one colour per class (by name up to 20 classes; beyond, the palette's ends)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    c = len(classnames)
    handles = [
        Line2D([], [], ls="", marker="o", ms=4, color="0.45", label="image (colour: its class)"),
        Line2D([], [], ls="", marker="*", ms=10, color="0.45", mec="k", label="class vector"),
    ]
    shown = range(c) if c <= 20 else (0, c - 1)
    handles += [Patch(color=class_colours(np.array([i]), c)[0], label=classnames[i]) for i in shown]
    if c > 20:
        handles.insert(3, Patch(color="none", label="…"))
    return handles
