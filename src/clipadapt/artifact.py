"""A classifier on disk: its tensors in ``classifier.safetensors`` and everything else in ``card.json``.

Any :class:`~clipadapt.methods.base.Classifier` dataclass saves generically: tensor fields and dicts of
tensors (a tuned LayerNorm state) go to safetensors under their field name (``field.key`` for dicts),
every other field to the card, with the class to rebuild and any extra metadata the caller adds
(backbone, data fingerprint, …). Both files are written atomically.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clipadapt.errors import ClipAdaptError
from clipadapt.io import atomic_path, write_json
from clipadapt.methods.base import Classifier

TENSORS, CARD = "classifier.safetensors", "card.json"


def save_classifier(classifier: Classifier, folder: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``classifier`` (and ``metadata`` into its card) under ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(classifier):
        value = getattr(classifier, f.name)
        if isinstance(value, torch.Tensor):
            tensors[f.name] = value.detach().cpu().contiguous()
        elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            tensors.update({f"{f.name}.{k}": v.detach().cpu().contiguous() for k, v in value.items()})
            fields[f.name] = {"tensors": sorted(value)}
        else:
            fields[f.name] = value
    cls = type(classifier)
    card = {"class": f"{cls.__module__}.{cls.__qualname__}", "fields": fields, **(metadata or {})}
    with atomic_path(folder / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json(folder / CARD, card)
    return folder


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / CARD
    if not path.is_file():
        raise ClipAdaptError(f"{str(folder)!r} is not a saved classifier (no {CARD})")
    return json.loads(path.read_text())


def load_classifier(folder: str | os.PathLike) -> Classifier:
    """The classifier saved under ``folder``."""
    card = read_card(folder)
    module, _, name = card["class"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Classifier)):
        raise ClipAdaptError(f"{str(folder)!r}: {card['class']!r} is not a classifier")
    tensors = load_file(str(Path(folder) / TENSORS))
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in tensors:
            kwargs[f.name] = tensors[f.name]
        elif isinstance(card["fields"].get(f.name), dict) and "tensors" in card["fields"][f.name]:
            kwargs[f.name] = {k: tensors[f"{f.name}.{k}"] for k in card["fields"][f.name]["tensors"]}
        elif f.name in card["fields"]:
            kwargs[f.name] = card["fields"][f.name]
    return cls(**kwargs)
