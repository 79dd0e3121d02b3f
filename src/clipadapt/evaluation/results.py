"""Result files: ``build`` of many result JSONs into one table."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

from clipadapt.errors import ClipAdaptError
from clipadapt.evaluation.episodes import protocol_from_record
from clipadapt.io import atomic_open

TABLE_COLUMNS = (
    "dataset", "model", "pretrained", "method", "setting", "shots", "protocol", "seed",
    "acc1", "acc5", "mean_per_class_recall", "seconds",
)  # fmt: skip
TABLE_FORMATS = (".csv", ".md", ".json")


def table_row(record: dict[str, Any]) -> dict[str, Any]:
    """The table's columns of one result record, plus what tells runs apart that the columns do not show:
    ``config`` (the hyperparameters as configured; older records: those recorded) and ``text`` (class
    names and prompts)."""
    metrics = record.get("metrics") or {}
    row = {k: record.get(k) for k in TABLE_COLUMNS if k not in metrics}
    row.update({k: metrics.get(k) for k in ("acc1", "acc5", "mean_per_class_recall")})
    row["protocol"] = protocol_from_record(record).label()
    config = record.get("config", record.get("hparams")) or {}
    return {**{k: row.get(k) for k in TABLE_COLUMNS}, "config": config, "text": record.get("text_digest")}


def read_results(paths: list[str]) -> list[dict[str, Any]]:
    """Table rows of the result JSONs ``paths`` (a path given twice, or spelled two ways, counts once)."""
    rows = []
    for p in dict.fromkeys(str(Path(p).resolve()) for p in paths):
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


def _variants(values: list[Any]) -> dict[Any, int]:
    """Distinct values, numbered 1, 2, … in first-seen order."""
    return {v: i + 1 for i, v in enumerate(dict.fromkeys(values))}


def _differences(configs: list[dict[str, Any]]) -> list[str]:
    """For each config, the ``key=value`` pairs in which the configs differ."""
    keys = sorted({k for c in configs for k in c if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1})
    return [", ".join(f"{k}={c.get(k)}" for k in keys) for c in configs]


def render_pivot(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (shots, dataset, target-set protocol, backbone, class names and prompts), one
    column per method and hyperparameter setting.

    Only runs that share all of those are averaged: a cell is "top-1 % (seconds)", or "mean ± std
    (mean seconds, n seeds)" over several seeds. A method run with several settings gets one column per
    setting (``inmap [2]``) and a dataset with several class-name or prompt sets one row per set, each
    explained under the table. A last row per shots value gives each column's mean top-1 over the rows
    that every column has.
    """
    rows = [r for r in rows if r["acc1"] is not None]
    config_ids = {m: _variants([json.dumps(r["config"], sort_keys=True) for r in rows if r["method"] == m])
                  for m in dict.fromkeys(r["method"] for r in rows)}  # fmt: skip

    def column(r: dict[str, Any]) -> str:
        ids = config_ids[r["method"]]
        return r["method"] if len(ids) == 1 else f"{r['method']} [{ids[json.dumps(r['config'], sort_keys=True)]}]"

    texts: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        texts.setdefault((r["dataset"], r["pretrained"], r["model"]), []).append(r["text"])
    text_ids = {key: _variants(values) for key, values in texts.items()}

    def dataset_label(r: dict[str, Any]) -> str:
        ids = text_ids[(r["dataset"], r["pretrained"], r["model"])]
        label = r["dataset"] if len(ids) == 1 else f"{r['dataset']} (class names/prompts {ids[r['text']]})"
        return label if r["protocol"] in (None, "whole set") else f"{label} · {r['protocol']}"

    columns = list(dict.fromkeys(column(r) for r in rows))
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        key = (r.get("shots"), dataset_label(r), r["pretrained"], r["model"])
        groups.setdefault(key, {}).setdefault(column(r), []).append(r)
    few_shot = any(key[0] is not None for key in groups)
    lines = [
        "| dataset | features |" + (" shots |" if few_shot else "") + " " + " | ".join(columns) + " |",
        "|" + "---|" * (len(columns) + 2 + few_shot),
    ]
    for shots in dict.fromkeys(key[0] for key in groups):
        shot_cell = f" {'–' if shots is None else shots} |" if few_shot else ""
        complete: dict[str, list[float]] = {c: [] for c in columns}
        for (k, dataset, pretrained, model), by_column in groups.items():
            if k != shots:
                continue
            shown = []
            for name in columns:
                runs = by_column.get(name, [])
                accs = [100 * r["acc1"] for r in runs]
                if not accs:
                    shown.append("")
                    continue
                seconds = sum(r["seconds"] or 0 for r in runs) / len(runs)
                if len(accs) > 1:
                    n_seeds = len({r["seed"] for r in runs})
                    count = f"{n_seeds} seeds" if n_seeds == len(runs) else f"{len(runs)} runs"
                    spread = f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}"
                    shown.append(f"{spread} ({seconds:.2f} s, {count})")
                else:
                    shown.append(f"{accs[0]:.2f} ({seconds:.2f} s)")
            if all(by_column.get(name) for name in columns):
                for name in columns:
                    complete[name].append(statistics.mean(100 * r["acc1"] for r in by_column[name]))
            lines.append(f"| {dataset} | {pretrained} {model} |{shot_cell} " + " | ".join(shown) + " |")
        n = len(complete[columns[0]]) if columns else 0
        cells = [f"**{statistics.mean(v):.2f}**" if v else "" for v in complete.values()]
        label = f"mean top-1 over the {n} row(s) every column has" if n else "mean top-1: no row has every column"
        lines.append(f"| {label} | |{shot_cell} " + " | ".join(cells) + " |")
    notes = []
    for method, ids in config_ids.items():
        if len(ids) > 1:
            for (_, i), diff in zip(ids.items(), _differences([json.loads(c) for c in ids]), strict=True):
                notes.append(f"- {method} [{i}]: {diff}")
    for (dataset, _, _), ids in text_ids.items():
        if len(ids) > 1:
            notes.append(
                f"- {dataset}: {len(ids)} different sets of class names or prompts (digests "
                + ", ".join(f"{i}: {t}" for t, i in ids.items())
                + ")"
            )
    return "\n".join([*lines, *([""] if notes else []), *notes]) + "\n"


def render_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: _cell(r[c]) for c in TABLE_COLUMNS} for r in rows)
    return buffer.getvalue()


def write_table(rows: list[dict[str, Any]], path: str | Path) -> None:
    """``.md`` → Markdown, ``.json`` → the rows as JSON, ``.csv`` → CSV; written atomically."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ClipAdaptError(f"{str(path)!r}: a table is written as {', '.join(TABLE_FORMATS)}")
    text = {".md": render_markdown, ".csv": render_csv, ".json": lambda r: json.dumps(r, indent=2) + "\n"}[suffix](rows)
    with atomic_open(path) as fh:
        fh.write(text)
