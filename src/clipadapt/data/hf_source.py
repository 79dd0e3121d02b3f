"""Hugging Face ``datasets`` by hub name or local folder (``hf:<name-or-path>``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from clipadapt.data.sources import ImageSource, UnreadableImage, _hash
from clipadapt.errors import ClipAdaptError


def _find_column(features: Any, kind: str) -> str | None:
    for column, feature in features.items():
        if type(feature).__name__ == kind:
            return column
    return None


class HFDatasetSource(ImageSource):
    """The first ``Image`` column is the image; the first ``ClassLabel`` column, if any, the label."""

    def __init__(self, spec: str, split: str) -> None:
        try:
            import datasets
        except ImportError:
            raise ClipAdaptError("Hugging Face datasets need the 'datasets' package: pip install datasets") from None
        try:
            if os.path.isdir(spec):
                loaded = datasets.load_from_disk(spec)
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise ClipAdaptError(f"{spec!r} has no split {split!r}; it has: {', '.join(loaded)}")
                    loaded = loaded[split]
            else:
                loaded = datasets.load_dataset(spec, split=split)
        except ClipAdaptError:
            raise
        except Exception as exc:  # datasets raises many unrelated types for "not found / offline"
            raise ClipAdaptError(f"cannot load Hugging Face dataset {spec!r} split {split!r}: {exc}") from None
        image_column = _find_column(loaded.features, "Image")
        if image_column is None:
            raise ClipAdaptError(f"Hugging Face dataset {spec!r} has no Image column ({', '.join(loaded.features)})")
        label_column = _find_column(loaded.features, "ClassLabel")
        self.dataset = loaded
        self.image_column = image_column
        self.name = os.path.basename(spec.rstrip("/")) or spec
        self.split = split
        self.labels = None if label_column is None else np.asarray(loaded[label_column], dtype=np.int64)
        self.classnames = (
            None if label_column is None else [n.replace("_", " ") for n in loaded.features[label_column].names]
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> Image.Image:
        try:
            image = self.dataset[index][self.image_column]
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImage(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(image, Image.Image):
            raise UnreadableImage("empty image cell")
        return image.convert("RGB")

    def describe(self, index: int) -> str:
        return f"{self.name}[{self.split}][{index}]"

    def fingerprint(self) -> str:
        return _hash(["hf", self.name, self.split, getattr(self.dataset, "_fingerprint", len(self))])
