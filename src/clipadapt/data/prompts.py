"""Class names, prompt templates and class descriptions: bundled per dataset or read from user files."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from clipadapt.data.classes import check_unique
from clipadapt.errors import ClipAdaptError

# Prompts are either templates (a list of strings with "{c}") or class descriptions
# ({classname: [sentences]}, CuPL style).
Prompts = list[str] | dict[str, list[str]]

DEFAULT_TEMPLATES = [
    "itap of a {c}.",
    "a bad photo of the {c}.",
    "a origami {c}.",
    "a photo of the large {c}.",
    "a {c} in a video game.",
    "art of the {c}.",
    "a photo of the small {c}.",
    "a photo of a {c}.",
]


@cache
def bundled_metadata() -> dict[str, dict[str, list[str]]]:
    """Per-dataset class names and templates shipped with clipadapt (see the README for their origin)."""
    text = resources.files("clipadapt.resources").joinpath("datasets.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


def _read_list_or_json(path: str | Path, what: str) -> object:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClipAdaptError(f"cannot read {what} file {str(path)!r}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClipAdaptError(f"{what} file {str(path)!r} is not valid JSON: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_classnames(path: str | Path) -> list[str]:
    """One class name per line (``.txt``) or a JSON list."""
    names = _read_list_or_json(path, "class-names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ClipAdaptError(f"class-names file {str(path)!r} must hold a non-empty list of names")
    check_unique(names, f"class-names file {str(path)!r}")
    return names


def read_prompts(path: str | Path) -> Prompts:
    """Templates (one per line, or a JSON list, each with ``{c}``) or a JSON dict of class descriptions."""
    prompts = _read_list_or_json(path, "templates")
    if isinstance(prompts, dict):
        if not all(isinstance(v, list) and v and all(isinstance(s, str) for s in v) for v in prompts.values()):
            raise ClipAdaptError(f"descriptions file {str(path)!r} must map each class name to a list of sentences")
        return prompts
    if not isinstance(prompts, list) or not prompts or not all(isinstance(t, str) for t in prompts):
        raise ClipAdaptError(f"templates file {str(path)!r} must hold a non-empty list of templates")
    missing = [t for t in prompts if "{c}" not in t]
    if missing:
        raise ClipAdaptError(f"every template needs a '{{c}}' placeholder; {missing[0]!r} has none")
    return prompts


def expand_prompts(classnames: list[str], prompts: Prompts) -> list[list[str]]:
    """The sentences to encode for each class: C lists (equal length P for templates)."""
    if isinstance(prompts, dict):
        missing = [c for c in classnames if c not in prompts]
        if missing:
            raise ClipAdaptError(f"the descriptions lack {len(missing)} class(es), e.g. {missing[0]!r}")
        return [list(prompts[c]) for c in classnames]
    return [[t.replace("{c}", c) for t in prompts] for c in classnames]
