"""torchvision datasets by CLIP_benchmark-style names (``cifar10``, ``eurosat``, ``imagenet1k``, …)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from clipadapt.data.sources import ImageSource, UnreadableImage, _hash
from clipadapt.errors import ClipAdaptError


@dataclass(frozen=True)
class TorchvisionSpec:
    """How to build one torchvision dataset: class name, and how our split names map onto its arguments."""

    cls: str
    splits: dict[str, dict[str, Any]]  # our split name → constructor keyword arguments
    extra: dict[str, Any] | None = None


_TRAIN_TEST = {"train": {"train": True}, "test": {"train": False}}


def _split(train: str = "train", test: str = "test", **more: str) -> dict[str, dict[str, Any]]:
    out = {"train": {"split": train}, "test": {"split": test}}
    out.update({k: {"split": v} for k, v in more.items()})
    return out


TORCHVISION_DATASETS: dict[str, TorchvisionSpec] = {
    "cifar10": TorchvisionSpec("CIFAR10", _TRAIN_TEST),
    "cifar100": TorchvisionSpec("CIFAR100", _TRAIN_TEST),
    "mnist": TorchvisionSpec("MNIST", _TRAIN_TEST),
    "stl10": TorchvisionSpec("STL10", _split()),
    "svhn": TorchvisionSpec("SVHN", _split()),
    "dtd": TorchvisionSpec("DTD", _split(val="val")),
    "flowers": TorchvisionSpec("Flowers102", _split(val="val")),
    "pets": TorchvisionSpec("OxfordIIITPet", _split(train="trainval")),
    "food101": TorchvisionSpec("Food101", _split()),
    "cars": TorchvisionSpec("StanfordCars", _split()),
    "fgvc_aircraft": TorchvisionSpec("FGVCAircraft", _split(train="trainval", val="val")),
    "gtsrb": TorchvisionSpec("GTSRB", _split()),
    "country211": TorchvisionSpec("Country211", _split(val="valid")),
    "fer2013": TorchvisionSpec("FER2013", _split()),
    "pcam": TorchvisionSpec("PCAM", _split(val="val")),
    "imagenet1k": TorchvisionSpec("ImageNet", _split(test="val")),
    # No official split in torchvision: the whole dataset is the one split "all".
    "eurosat": TorchvisionSpec("EuroSAT", {"all": {}}),
    "caltech101": TorchvisionSpec("Caltech101", {"all": {}}, {"target_type": "category"}),
    "sun397": TorchvisionSpec("SUN397", {"all": {}}),
}

_LABEL_ATTRIBUTES: tuple[tuple[str, Callable[[Any], list[int]]], ...] = (
    ("targets", lambda v: list(v)),
    ("_labels", lambda v: list(v)),
    ("labels", lambda v: list(v)),
    ("y", lambda v: list(v)),
    ("_samples", lambda v: [s[1] for s in v]),
)


def _dataset_labels(dataset: Any) -> np.ndarray:
    """Labels of a torchvision dataset without decoding any image, when it keeps them in an attribute."""
    for attr, read in _LABEL_ATTRIBUTES:
        value = getattr(dataset, attr, None)
        if value is not None and len(value) == len(dataset):
            return np.asarray([int(v) for v in read(value)], dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def _dataset_classnames(dataset: Any) -> list[str] | None:
    classes = getattr(dataset, "classes", None) or getattr(dataset, "categories", None)
    if not classes:
        return None
    return [str(c if isinstance(c, str) else c[0]).replace("_", " ") for c in classes]


class TorchvisionSource(ImageSource):
    def __init__(self, name: str, root: str | None, split: str, download: bool = False) -> None:
        import torchvision.datasets as tvd

        spec = TORCHVISION_DATASETS[name]
        if split not in spec.splits:
            raise ClipAdaptError(f"dataset {name!r} has no split {split!r}; use one of: {', '.join(spec.splits)}")
        if root is None:
            raise ClipAdaptError(f"dataset {name!r} needs --dataset_root DIR (where torchvision keeps it)")
        kwargs = {**spec.splits[split], **(spec.extra or {})}
        if spec.cls != "ImageNet":
            kwargs["download"] = download
        try:
            self.dataset = getattr(tvd, spec.cls)(root, **kwargs)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            hint = "" if download else " (add --download to fetch it, where a network exists)"
            raise ClipAdaptError(f"cannot open {name!r} in {root!r}: {str(exc).splitlines()[0]}{hint}") from None
        self.name = name
        self.split = split
        self.root = root
        self.labels = _dataset_labels(self.dataset)
        self.classnames = _dataset_classnames(self.dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> Image.Image:
        try:
            image = self.dataset[index][0]
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImage(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(image, Image.Image):
            raise UnreadableImage(f"dataset returned {type(image).__name__}, not an image")
        return image.convert("RGB")

    def describe(self, index: int) -> str:
        return f"{self.name}[{self.split}][{index}]"

    def fingerprint(self) -> str:
        return _hash(["torchvision", self.name, self.split, str(self.root), len(self), self.labels.tolist()])
