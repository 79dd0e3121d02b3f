"""Templated output paths: the ``{placeholders}`` of ``--output`` (kept free of heavy imports: the CLI's
help text lists them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from clipadapt.errors import ClipAdaptError

PLACEHOLDERS = ("dataset", "model", "pretrained", "method", "setting", "seed", "shots")


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
