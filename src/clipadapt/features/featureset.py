"""FeatureSet: the image and text features every method works on, and the ``.npz`` feature-file contract.

File keys: ``image_features`` (N, D), ``text_features`` (C, D); optional ``labels`` (N,),
``text_all`` (P, C, D), ``classnames`` (C,), ``prompt_names`` (P,), ``model``, ``pretrained``, ``dataset``
(0-d strings), ``split`` (N,) strings. clipadapt also writes ``paths`` (N,) when images came from files, and
``view_features`` (N, V, D) with ``view_augment`` (0-d string, ``crop`` or ``flip``) when views were extracted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError
from clipadapt.io import atomic_path

if TYPE_CHECKING:
    from clipadapt.features.images import EncoderInputs


@dataclass
class FeatureSet:
    image_features: torch.Tensor  # (N, D) float32, not necessarily normalised
    text_features: torch.Tensor  # (C, D) float32, one prototype per class
    labels: torch.Tensor | None = None  # (N,) int64, None when unlabelled
    text_all: torch.Tensor | None = None  # (P, C, D) per-prompt text features
    classnames: list[str] | None = None  # (C,)
    prompt_names: list[str] | None = None  # (P,)
    split: np.ndarray | None = None  # (N,) "train"/"test"/…
    paths: list[str] | None = None  # (N,)
    model: str = ""
    pretrained: str = ""
    dataset: str = ""
    view_features: torch.Tensor | None = None  # (N, V, D) features of V augmented views of each image
    view_augment: str = ""  # what the views are: "crop", "flip", or "" when unknown or absent
    extra: dict[str, object] = field(default_factory=dict)
    encoder: EncoderInputs | None = None  # the images and backbone behind the rows (not in feature files)

    def __len__(self) -> int:
        return int(self.image_features.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.text_features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.image_features.shape[1])

    @property
    def class_names(self) -> list[str]:
        """The class names, or the class indices as text when the features have none."""
        return self.classnames or [str(i) for i in range(self.num_classes)]

    def text_digest(self) -> str:
        """A short digest of what the class prototypes stand for: the class names and the prompts (the
        templates, or each class's sentences), or, for a feature file that names no prompts, the
        prototypes themselves. Runs whose digests differ are not repeats of one another."""
        if self.prompt_names is not None:
            prompts: object = self.prompt_names
        elif self.encoder is not None:
            prompts = self.encoder.sentences
        else:
            prompts = hashlib.sha256(self.text_features.cpu().numpy().tobytes()).hexdigest()
        return hashlib.sha256(json.dumps([self.class_names, prompts]).encode()).hexdigest()[:12]

    def normalised(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) image features and (C, D) class prototypes as float32 with unit rows."""
        return F.normalize(self.image_features.float(), dim=1), F.normalize(self.text_features.float(), dim=1)

    def to(self, device: torch.device | str) -> FeatureSet:
        """The same rows with every tensor on ``device`` (moved once; the feature file's arrays stay where they are)."""
        device = torch.device(device)

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            image_features=self.image_features.to(device),
            text_features=self.text_features.to(device),
            labels=move(self.labels),
            text_all=move(self.text_all),
            view_features=move(self.view_features),
        )

    @property
    def device(self) -> torch.device:
        return self.image_features.device

    def without_labels(self) -> FeatureSet:
        """The same features with labels removed: what label-free methods receive."""
        return dataclasses.replace(self, labels=None)

    def subset(self, index: torch.Tensor | np.ndarray) -> FeatureSet:
        """Rows ``index`` (bool mask or integer indices) of every per-image field."""
        idx = index.cpu() if isinstance(index, torch.Tensor) else torch.as_tensor(np.asarray(index))
        if idx.dtype == torch.bool:
            idx = idx.nonzero().squeeze(1)
        np_idx = idx.numpy()
        return dataclasses.replace(
            self,
            image_features=self.image_features[idx],
            view_features=None if self.view_features is None else self.view_features[idx],
            labels=None if self.labels is None else self.labels[idx],
            split=None if self.split is None else self.split[np_idx],
            paths=None if self.paths is None else [self.paths[i] for i in np_idx],
            encoder=None if self.encoder is None else self.encoder.subset(np_idx),
        )

    def split_mask(self, name: str) -> np.ndarray:
        if self.split is None:
            return np.ones(len(self), dtype=bool)
        return self.split == name


REQUIRED_KEYS = ("image_features", "text_features")


def _string(value: np.ndarray) -> str:
    return str(value.item()) if value.ndim == 0 else str(value)


def load_feature_file(path: str | os.PathLike) -> FeatureSet:
    """Read and validate a feature file; any problem is one :class:`ClipAdaptError` naming the file."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ClipAdaptError(f"feature file {name!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ClipAdaptError(f"{name!r} is not a clipadapt feature file: not an .npz archive (numpy.savez writes one)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if "allow_pickle" in str(exc):  # numpy's advice to unpickle: never right for a feature file
            raise ClipAdaptError(
                f"{name!r} is not a clipadapt feature file: it holds pickled Python objects, which clipadapt "
                "never loads (a feature file holds numeric arrays and strings; see the README)"
            ) from None
        raise ClipAdaptError(f"{name!r} is not a readable .npz feature file ({str(exc).splitlines()[0]})") from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)[:8]) or "nothing"
        raise ClipAdaptError(
            f"{name!r} is not a clipadapt feature file: it lacks {', '.join(missing)} (it holds {found})"
        )

    def bad(msg: str) -> ClipAdaptError:
        return ClipAdaptError(f"feature file {name!r}: {msg}")

    image, text = arrays["image_features"], arrays["text_features"]
    if image.ndim != 2 or text.ndim != 2:
        raise bad(f"image_features must be (N, D) and text_features (C, D); got {image.shape} and {text.shape}")
    n, d = image.shape
    c = text.shape[0]
    if n == 0 or c == 0:
        raise bad("image_features and text_features must not be empty")
    if text.shape[1] != d:
        raise bad(f"image features have dimension {d} but text features {text.shape[1]}")
    if c < 2:
        raise bad("one class: classification needs at least two text features (and a one-class accuracy means nothing)")
    views = arrays.get("view_features")
    if views is not None and (views.ndim != 3 or views.shape[0] != n or views.shape[2] != d):
        raise bad(f"view_features must be ({n}, V, {d}); got {views.shape}")
    for key in ("image_features", "text_features", "text_all", "view_features"):
        if key in arrays and not np.issubdtype(arrays[key].dtype, np.number):
            raise bad(f"{key} must be numeric, not {arrays[key].dtype}")
        if key in arrays and not np.isfinite(arrays[key]).all():
            raise bad(f"{key} contains NaN or infinite values")
    labels = None
    if "labels" in arrays:
        labels = arrays["labels"]
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise bad(f"labels must be ({n},) integers; got {labels.shape} {labels.dtype}")
        if labels.min() < 0 or labels.max() >= c:
            raise bad(f"labels span {labels.min()}..{labels.max()} but there are {c} classes")
    text_all = arrays.get("text_all")
    if text_all is not None and (text_all.ndim != 3 or text_all.shape[1:] != (c, d)):
        raise bad(f"text_all must be (P, {c}, {d}); got {text_all.shape}")
    classnames = [str(s) for s in arrays["classnames"]] if "classnames" in arrays else None
    if classnames is not None and len(classnames) != c:
        raise bad(f"{len(classnames)} class names for {c} text features")
    prompt_names = [str(s) for s in arrays["prompt_names"]] if "prompt_names" in arrays else None
    split = arrays["split"].astype(str) if "split" in arrays else None
    if split is not None and split.shape != (n,):
        raise bad(f"split must be ({n},) strings; got {split.shape}")
    paths = [str(s) for s in arrays["paths"]] if "paths" in arrays else None
    return FeatureSet(
        image_features=torch.from_numpy(image.astype(np.float32)),
        text_features=torch.from_numpy(text.astype(np.float32)),
        labels=None if labels is None else torch.from_numpy(labels.astype(np.int64)),
        text_all=None if text_all is None else torch.from_numpy(text_all.astype(np.float32)),
        view_features=None if views is None else torch.from_numpy(views.astype(np.float32)),
        view_augment=_string(arrays["view_augment"]) if views is not None and "view_augment" in arrays else "",
        classnames=classnames or [f"class {i}" for i in range(c)],
        prompt_names=prompt_names,
        split=split,
        paths=paths,
        model=_string(arrays["model"]) if "model" in arrays else "",
        pretrained=_string(arrays["pretrained"]) if "pretrained" in arrays else "",
        dataset=_string(arrays["dataset"]) if "dataset" in arrays else path.stem,
    )


def save_feature_file(features: FeatureSet, path: str | os.PathLike) -> None:
    """Write ``features`` in the feature-file format, atomically."""
    arrays: dict[str, np.ndarray] = {
        "image_features": features.image_features.cpu().numpy(),
        "text_features": features.text_features.cpu().numpy(),
        "model": np.array(features.model),
        "pretrained": np.array(features.pretrained),
        "dataset": np.array(features.dataset),
    }
    if features.labels is not None:
        arrays["labels"] = features.labels.cpu().numpy()
    if features.text_all is not None:
        arrays["text_all"] = features.text_all.cpu().numpy()
    if features.view_features is not None:
        arrays["view_features"] = features.view_features.cpu().numpy()
        if features.view_augment:
            arrays["view_augment"] = np.array(features.view_augment)
    if features.classnames is not None:
        arrays["classnames"] = np.array(features.classnames)
    if features.prompt_names is not None:
        arrays["prompt_names"] = np.array(features.prompt_names)
    if features.split is not None:
        arrays["split"] = np.asarray(features.split).astype(str)
    if features.paths is not None:
        arrays["paths"] = np.array(features.paths)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
