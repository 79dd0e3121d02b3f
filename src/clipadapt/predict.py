"""Apply a saved classifier to new images: ``clipadapt predict`` and :func:`predict`.

Images come as files, folders (searched recursively), globs or CSV manifests (a ``path`` column). Each
image gets one output row: its path, the top-k labels with their probabilities (softmax of the
classifier's logits), and an ``error`` that is empty unless the image could not be read — unreadable
images are listed with the reason, never dropped.

:func:`predict_csv` writes rows as batches finish into ``OUT.partial`` (with ``OUT.partial.json``
recording what it is a part of) and renames it onto ``OUT`` at the end: an interrupted run leaves no
``OUT`` and resumes from the partial file when rerun with the same classifier and options.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from clipadapt.artifact import CARD, backbone_from_card, check_backbone, load_classifier, read_card
from clipadapt.backbones.base import Backbone
from clipadapt.data.sources import FileListSource, is_image_file, manifest_files, read_manifest
from clipadapt.errors import ClipAdaptError, plural
from clipadapt.features.store import ImageDataset, collate_images, default_num_workers
from clipadapt.methods.base import Classifier
from clipadapt.progress import progress
from clipadapt.runtime import float32_matmuls

log = logging.getLogger("clipadapt")


def collect_images(inputs: Sequence[str]) -> list[str]:
    """Files, folders (every image below, sorted), globs and CSV manifests → image paths, first-seen order.

    A named file or folder that does not exist, or a glob that matches nothing, is an error; a CSV row
    whose file is missing stays in the list (and is reported as unreadable). A file reached twice (``./x``
    and ``/abs/x``, a link and its target) is listed once, as first spelt.
    """
    paths: list[str] = []
    for item in inputs:
        if glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise ClipAdaptError(f"{item!r} matches no file")
            paths += [p for m in matches for p in (_folder_images(Path(m)) if os.path.isdir(m) else [m])]
        elif os.path.isdir(item):
            paths += _folder_images(Path(item))
        elif item.lower().endswith(".csv") and os.path.isfile(item):
            manifest = Path(item)
            paths += [f for f in manifest_files(manifest, read_manifest(manifest)[1]) if f]
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise ClipAdaptError(f"{item!r}: no such file or folder")
    first: dict[str, str] = {}  # one row per file, as first spelt
    for path in paths:
        first.setdefault(os.path.realpath(path), path)
    unique = list(first.values())
    if not unique:
        raise ClipAdaptError(f"no images found in {', '.join(map(repr, inputs))}")
    return unique


def _folder_images(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def columns(top_k: int) -> list[str]:
    """The output CSV's header: path, label_1, probability_1, …, label_k, probability_k, error."""
    return ["path", *(f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "probability")), "error"]


@torch.no_grad()
def predict_images(
    classifier: Classifier,
    backbone: Backbone,
    paths: Sequence[str],
    top_k: int = 5,
    batch_size: int = 64,
    num_workers: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per path, in order (see :func:`columns`; at most one label per class); probabilities are
    floats, missing values ''."""
    classes = classifier.classnames
    top_k = min(top_k, len(classes))  # no empty columns
    workers = default_num_workers() if num_workers is None else num_workers
    loader = DataLoader(
        ImageDataset(FileListSource("predict", paths, None, None), backbone.preprocess),
        batch_size=batch_size,
        num_workers=min(workers, max(len(paths) // batch_size, 0)),
        collate_fn=collate_images,
        pin_memory=backbone.device.type == "cuda",
    )
    for indices, pixels, failed in progress(loader, desc="predicting", total=len(loader), unit="batch"):
        rows: dict[int, dict[str, Any]] = {i: _row(paths[i], [], [], top_k, reason) for i, reason in failed}
        if pixels is not None:
            with float32_matmuls(backbone.device, backbone.precision):  # TF32 as the adaptation had it
                probabilities = classifier.pixel_logits(backbone, pixels).float().softmax(dim=-1)
            top = probabilities.topk(top_k, dim=-1)
            for i, p, c in zip(indices, top.values.tolist(), top.indices.tolist(), strict=True):
                rows[i] = _row(paths[i], [classes[j] for j in c], p, top_k, "")
        yield from (rows[i] for i in sorted(rows))


def _row(path: str, labels: list[str], probabilities: list[float], top_k: int, error: str) -> dict[str, Any]:
    row: dict[str, Any] = {"path": path}
    for i in range(top_k):
        row[f"label_{i + 1}"] = labels[i] if i < len(labels) else ""
        row[f"probability_{i + 1}"] = probabilities[i] if i < len(probabilities) else ""
    row["error"] = error
    return row


def card_precision(card: dict[str, Any]) -> str:
    """The precision policy the classifier was adapted under (auto for cards that predate the record)."""
    return str((card.get("runtime") or {}).get("precision", "auto"))


def open_classifier(
    folder: str | os.PathLike,
    backbone: Backbone | None = None,
    device: str = "auto",
    precision: str | None = None,
    cache_dir: str | None = None,
) -> tuple[Classifier, Backbone]:
    """The saved classifier and its backbone (loaded from the card unless given, then checked), on the
    backbone's device. A backbone loaded here follows ``precision``, by default the card's policy, so that
    predictions on the device it was adapted on agree with the adaptation's."""
    card = read_card(folder)
    if backbone is None:
        backbone = backbone_from_card(card, device, precision or card_precision(card), cache_dir)
    check_backbone(card, backbone, folder)
    classifier = load_classifier(folder).to(backbone.device)
    dim = backbone.encode_texts(["a photo"]).shape[1]
    if classifier.weights.shape[1] != dim:
        raise ClipAdaptError(
            f"the classifier in {str(folder)!r} works on {classifier.weights.shape[1]}-dimensional features but "
            f"{backbone.name} produces {dim}-dimensional ones"
        )
    return classifier, backbone


def predict(
    classifier: str | os.PathLike | Classifier,
    images: Sequence[str],
    backbone: Backbone | None = None,
    top_k: int = 5,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str = "auto",
    precision: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of :func:`predict_images` for ``images`` (files, folders, globs, CSVs) in memory.

    ``classifier`` is a saved folder (its backbone is loaded from the card, on ``device`` and under
    ``precision`` — by default the card's —, unless given) or a :class:`Classifier` with the ``backbone``
    it was adapted on.
    """
    if isinstance(classifier, Classifier):
        if backbone is None:
            raise ClipAdaptError("an in-memory classifier needs the backbone it was adapted on")
        classifier = classifier.to(backbone.device)
    else:
        classifier, backbone = open_classifier(classifier, backbone, device, precision)
    return list(predict_images(classifier, backbone, collect_images(images), top_k, batch_size, num_workers))


@dataclass
class PredictSummary:
    output: Path
    images: int
    unreadable: int
    resumed: int  # rows taken over from an interrupted earlier run


def predict_csv(
    folder: str | os.PathLike,
    images: Sequence[str],
    output: str | os.PathLike,
    top_k: int = 5,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str = "auto",
    precision: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    backbone: Backbone | None = None,
) -> PredictSummary:
    """Predict ``images`` with the classifier saved in ``folder`` into the CSV ``output`` (resumable).

    The backbone is loaded from the classifier's card unless given (it is then checked against the card),
    under ``precision``, by default the card's.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise ClipAdaptError(f"{str(output)!r} exists; pass --overwrite to replace it")
    if top_k < 1:
        raise ClipAdaptError("--top_k must be at least 1")
    classifier, backbone = open_classifier(folder, backbone, device, precision, cache_dir)
    if top_k > len(classifier.classnames):
        log.info("--top_k %d is more than the %s: writing %d labels per image", top_k,
                 plural(len(classifier.classnames), "class"), len(classifier.classnames))  # fmt: skip
        top_k = len(classifier.classnames)
    paths = collect_images(images)  # every check above runs before any file is written
    partial, stamp = output.with_name(output.name + ".partial"), output.with_name(output.name + ".partial.json")
    identity = {"classifier": _digest([(Path(folder) / CARD).read_text()]), "top_k": top_k,
                "images": _digest(paths), "count": len(paths)}  # fmt: skip
    done = _resume(partial, stamp, identity, top_k)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not done:
        stamp.write_text(json.dumps(identity))
    unreadable = sum(1 for row in done.values() if row["error"])
    with open(partial, "a" if done else "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns(top_k), lineterminator="\n")  # as a resumed file is cut
        if not done:
            writer.writeheader()
        todo = [p for p in paths if p not in done]
        for row in predict_images(classifier, backbone, todo, top_k, batch_size, num_workers):
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})
            fh.flush()
            if row["error"]:
                unreadable += 1
                log.warning("cannot read %s: %s", row["path"], row["error"])
    os.replace(partial, output)
    stamp.unlink()
    return PredictSummary(output, len(paths), unreadable, len(done))


def _digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def _resume(partial: Path, stamp: Path, identity: dict[str, Any], top_k: int) -> dict[str, dict[str, str]]:
    """Rows of an interrupted run of the same job (its last, possibly cut, line dropped), else {}."""
    if not (partial.is_file() and stamp.is_file()):
        return {}
    try:
        same = json.loads(stamp.read_text()) == identity
    except (OSError, json.JSONDecodeError):
        same = False
    if not same:
        log.info("%s belongs to another job; starting over", partial)
        return {}
    text = partial.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]  # a kill mid-write leaves a cut last line
    rows = list(csv.DictReader(complete.splitlines()))
    if not rows:
        return {}
    with open(partial, "w", newline="", encoding="utf-8") as fh:
        fh.write(complete)
    log.info("resuming: %d of %d images already predicted in %s", len(rows), identity["count"], partial)
    return {row["path"]: row for row in rows if list(row) == columns(top_k)}
