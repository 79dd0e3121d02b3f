"""Result files: templated output paths, and ``build`` of many result JSONs into one table."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path
from typing import Any

from clipadapt.errors import ClipAdaptError
from clipadapt.io import atomic_open

PLACEHOLDERS = ("dataset", "model", "pretrained", "method", "setting", "seed", "shots")
TABLE_COLUMNS = (
    "dataset", "model", "pretrained", "method", "setting", "shots", "seed",
    "acc1", "acc5", "mean_per_class_recall", "seconds",
)  # fmt: skip


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(value)).strip("_") or "none"


def output_path(template: str, record: dict[str, Any]) -> Path:
    """Fill ``{dataset}``, ``{model}``, ``{pretrained}``, ``{method}``, … with file-name-safe values."""
    try:
        return Path(template.format(**{k: _slug(record.get(k)) for k in PLACEHOLDERS}))
    except (KeyError, IndexError, ValueError) as exc:
        raise ClipAdaptError(
            f"bad --output template {template!r} ({exc}); placeholders: "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        ) from None


def table_row(record: dict[str, Any]) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    row = {k: record.get(k) for k in TABLE_COLUMNS if k not in metrics}
    row.update({k: metrics.get(k) for k in ("acc1", "acc5", "mean_per_class_recall")})
    return {k: row.get(k) for k in TABLE_COLUMNS}


def read_results(paths: list[str]) -> list[dict[str, Any]]:
    rows = []
    for p in paths:
        try:
            record = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ClipAdaptError(f"cannot read result file {p!r}: {exc}") from None
        if not isinstance(record, dict) or "method" not in record:
            raise ClipAdaptError(f"{p!r} is not a clipadapt result JSON")
        rows.append(table_row(record))
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_pivot(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (dataset, pretrained, model, shots), one column per method.

    A cell is "top-1 % (seconds)", or "mean ± std (mean seconds)" over the seeds when there are several; a
    last row per shots value gives each method's mean top-1 over the rows that have it.
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        if r["acc1"] is not None:
            key = (r.get("shots"), r["dataset"], r["pretrained"], r["model"])
            groups.setdefault(key, {}).setdefault(r["method"], []).append(r)
    few_shot = any(key[0] is not None for key in groups)
    lines = [
        "| dataset | features |" + (" shots |" if few_shot else "") + " " + " | ".join(methods) + " |",
        "|" + "---|" * (len(methods) + 2 + few_shot),
    ]
    shots_values = list(dict.fromkeys(key[0] for key in groups))
    for shots in shots_values:
        means: dict[str, list[float]] = {m: [] for m in methods}
        for (k, dataset, pretrained, model), by_method in groups.items():
            if k != shots:
                continue
            shown = []
            for name in methods:
                runs = by_method.get(name, [])
                accs = [100 * r["acc1"] for r in runs]
                if not accs:
                    shown.append("")
                    continue
                mean = sum(accs) / len(accs)
                means[name].append(mean)
                seconds = sum(r["seconds"] for r in runs) / len(runs)
                spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
                shown.append(f"{mean:.2f}{spread} ({seconds:.2f} s)")
            shot_cell = f" {shots} |" if few_shot else ""
            lines.append(f"| {dataset} | {pretrained} {model} |{shot_cell} " + " | ".join(shown) + " |")
        cells = [f"**{sum(v) / len(v):.2f}**" if v else "" for v in means.values()]
        shot_cell = f" {shots} |" if few_shot else ""
        lines.append(f"| mean top-1 | |{shot_cell} " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: _cell(r[c]) for c in TABLE_COLUMNS} for r in rows)
    return buffer.getvalue()


def write_table(rows: list[dict[str, Any]], path: str | Path) -> None:
    """``.md`` → Markdown, anything else → CSV; written atomically."""
    text = render_markdown(rows) if str(path).endswith(".md") else render_csv(rows)
    with atomic_open(path) as fh:
        fh.write(text)
