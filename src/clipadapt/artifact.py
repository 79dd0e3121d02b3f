"""A classifier on disk: its tensors in ``classifier.safetensors`` and everything else in ``card.json``.

Any :class:`~clipadapt.methods.base.Classifier` dataclass saves generically: tensor fields and dicts of
tensors (a tuned LayerNorm state) go to safetensors under their field name (``field.key`` for dicts),
every other field to the card, with the name of the class to rebuild (resolved through
:data:`~clipadapt.methods.base.CLASSIFIERS`, never imported from a path the card gives) and any extra
metadata the caller adds
(:func:`adaptation_card`: backbone, prompts, method, data fingerprint, …). Both files are written
atomically, the card last: a folder with a card is complete.

Loading with a backbone checks it is the one the classifier was adapted on (:func:`check_backbone`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clipadapt import __version__
from clipadapt.backbones.base import Backbone
from clipadapt.errors import ClipAdaptError
from clipadapt.features.featureset import FeatureSet
from clipadapt.io import atomic_path, write_json
from clipadapt.methods import Classifier  # the package: every built-in classifier class is registered
from clipadapt.methods.base import CLASSIFIERS

TENSORS, CARD, RESULT = "classifier.safetensors", "card.json", "result.json"
log = logging.getLogger("clipadapt")


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
    card = {"class": cls.__name__, "fields": fields, **(metadata or {})}
    with atomic_path(folder / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json(folder / CARD, card)
    return folder


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / CARD
    if not path.is_file():
        raise ClipAdaptError(f"{str(folder)!r} is not a saved classifier (no {CARD})")
    return json.loads(path.read_text())


def load_classifier(folder: str | os.PathLike, backbone: Backbone | None = None) -> Classifier:
    """The classifier saved under ``folder``; with ``backbone``, first check it is the one adapted on."""
    card = read_card(folder)
    if backbone is not None:
        check_backbone(card, backbone, folder)
    name = str(card.get("class", "")).rpartition(".")[2]  # older cards give a dotted path
    if name not in CLASSIFIERS:
        known = ", ".join(sorted(CLASSIFIERS))
        raise ClipAdaptError(f"{str(folder)!r}: its card names the class {card.get('class')!r}, not a classifier "
                             f"of this clipadapt ({known})")  # fmt: skip
    cls = CLASSIFIERS[name]
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


# -- what the card says about an adaptation --------------------------------------------------------------


METRICS_OF = {
    "transductive": "the method's transductive predictions on the adaptation images (what eval reports)",
    "classifier": "the saved classifier applied to the adaptation images (what predict gives on them)",
}


def adaptation_card(features: FeatureSet, record: dict[str, Any], report: str | None = None) -> dict[str, Any]:
    """Card metadata for a classifier fitted on ``features`` by the run ``record`` (a result record).

    ``metrics`` are the record's, and ``metrics_of`` says what they measure: for a transductive method,
    its own predictions on the images it adapted on, which ``predict`` does not reproduce (it applies the
    saved classifier); ``classifier_metrics`` then holds what the saved classifier gives on those images.
    ``report`` is where the run's report was written, if anywhere.
    """
    if features.encoder is not None:
        backbone = features.encoder.backbone.identity()
        data_fingerprint = features.encoder.source.fingerprint()
    else:  # a feature file: the backbone is known by name only, the data by its features
        backbone = {"model": features.model, "pretrained": features.pretrained}
        data_fingerprint = hashlib.sha256(features.image_features.cpu().numpy().tobytes()).hexdigest()[:16]
    if features.prompt_names is not None:
        prompts: dict[str, Any] = {"templates": features.prompt_names}
    elif features.encoder is not None:
        prompts = {"descriptions": dict(zip(features.class_names, features.encoder.sentences, strict=True))}
    else:
        prompts = {}
    card = {
        "clipadapt_version": __version__,
        "backbone": backbone,
        "classnames": features.class_names,
        "prompts": prompts,
        "method": record["method"],
        "setting": record["setting"],
        "hparams": record["hparams"],
        "seed": record["seed"],
        "shots": record["shots"],
        "data": {"dataset": features.dataset, "images": len(features), "fingerprint": data_fingerprint},
        "metrics": record["metrics"],
        "metrics_of": METRICS_OF["transductive" if "classifier_metrics" in record else "classifier"],
        "runtime": record["runtime"],  # device and precision policy: predict applies the same policy
        "report": None if report is None else str(Path(report).resolve()),
    }
    if "classifier_metrics" in record:
        card |= {"classifier_metrics": record["classifier_metrics"], "classifier_metrics_of": METRICS_OF["classifier"]}
    return card


def remove_classifier(folder: str | os.PathLike) -> None:
    """Delete what :func:`save_classifier` and ``clipadapt adapt`` wrote in ``folder``: the card (first, so
    that the folder never looks complete while half removed), the tensors, ``result.json``, and the report
    the card names when it lies inside the folder (with its figures)."""
    folder = Path(folder)
    if not (folder / CARD).is_file():
        return
    report = read_card(folder).get("report")
    (folder / CARD).unlink()
    for name in (TENSORS, RESULT):
        (folder / name).unlink(missing_ok=True)
    if report and Path(report).resolve().is_relative_to(folder.resolve()):
        Path(report).unlink(missing_ok=True)
        shutil.rmtree(Path(report).with_name(f"{Path(report).stem}_figures"), ignore_errors=True)


def describe_backbone(identity: dict[str, Any]) -> str:
    pretrained = identity.get("pretrained")
    return f"{identity.get('model')!r}" + (f" (pretrained {pretrained!r})" if pretrained else "")


def check_backbone(card: dict[str, Any], backbone: Backbone, folder: str | os.PathLike = "") -> None:
    """Raise a :class:`ClipAdaptError` unless ``backbone`` is the model the classifier was adapted on.

    The library and model must match; the pretrained tag too, unless the weight files are the same ones
    (a checkpoint moved elsewhere). Other weight files under the same tag only warn (a copied checkpoint
    changes its timestamps, and with them the fingerprint).
    """
    expected = card.get("backbone") or {}
    actual = backbone.identity()
    if not expected.get("library"):  # adapted on a feature file: its model names are labels, not identities
        log.warning("the classifier was adapted on a feature file labelled %s; clipadapt cannot check that %s "
                    "is that backbone", describe_backbone(expected), describe_backbone(actual))  # fmt: skip
        return
    same_weights = expected.get("weights") == actual["weights"]
    if (
        any(expected.get(k) and expected[k] != actual[k] for k in ("model", "library"))
        or (expected.get("pretrained") and expected["pretrained"] != actual["pretrained"] and not same_weights)
    ):  # fmt: skip
        raise ClipAdaptError(
            f"the classifier in {str(folder)!r} was adapted on {describe_backbone(expected)} but the backbone "
            f"given is {describe_backbone(actual)}; use the same backbone (or let predict load it from the card)"
        )
    if expected.get("weights") and not same_weights:
        log.warning("%s: the weight files differ from those the classifier was adapted on", describe_backbone(actual))


def backbone_from_card(
    card: dict[str, Any], device: str = "auto", precision: str = "auto", cache_dir: str | None = None
) -> Backbone:
    """Load the backbone named in the card (model and pretrained tag)."""
    from clipadapt.backbones import load_backbone

    identity = card.get("backbone") or {}
    if not identity.get("library"):
        raise ClipAdaptError(
            f"the classifier was adapted on a feature file labelled {describe_backbone(identity)}, which names no "
            "loadable backbone: pass the backbone that made those features (--model and --pretrained)"
        )
    pretrained = identity.get("pretrained") or None
    if identity.get("library") == "toyclip" and pretrained == "bundled":
        pretrained = None
    return load_backbone(identity["model"], pretrained, device, precision, cache_dir)
