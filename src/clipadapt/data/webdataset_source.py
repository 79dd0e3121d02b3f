"""WebDataset tar shards (``--dataset 'shards/data-{000000..000099}.tar'``) as an indexed image source.

Shard names are expanded as WebDataset expands them (braces, ``::`` between lists). Inside a shard, the
members of one sample share a key (WebDataset's ``base_plus_ext``: ``000123.jpg`` and ``000123.cls`` are
sample ``000123``): an image member (jpg, jpeg, png, webp, …) and, optionally, a class member ``cls``
holding the class index, or the class name (matched to the class names by name). Class names come from
``--classnames``, else from ``classnames.txt`` beside the shards or one folder up (CLIP_benchmark's
WebDataset layout, whose ``zeroshot_classification_templates.txt`` also gives the default prompts).

Opening the source reads every shard's headers once (tarfile seeks over the member data) and records where
each sample's image lies, so the source is indexed like a folder: the feature store splits it into chunks
of consecutive samples, which are resumable and shared out over torchrun ranks, and each loader process
reads its chunk's images in order, keeping its shards open. Shards must be seekable files (local or on a
shared file system).
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from clipadapt.data.classes import match_labels
from clipadapt.data.prompts import Prompts, read_prompts
from clipadapt.data.sources import IMAGE_EXTENSIONS, ImageSource, UnreadableImage, _hash, open_image
from clipadapt.errors import ClipAdaptError

CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
IMAGE_MEMBERS = frozenset(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)


def is_shard_spec(spec: str) -> bool:
    """A ``--dataset`` value naming tar shards: ends in ``.tar`` (after brace expansion)."""
    return spec.endswith(".tar") or spec.endswith(".tar}") or (".tar::" in spec)


@dataclass(frozen=True)
class Sample:
    shard: int  # index into the shard list
    key: str
    offset: int  # of the image member's data in the shard
    size: int
    extension: str


def index_shard(path: str, shard: int) -> tuple[list[Sample], list[str | None]]:
    """The samples of one shard, in order, and each sample's ``cls`` text (None without a ``cls`` member)."""
    images: dict[str, Sample] = {}
    labels: dict[str, str] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, extension = base_plus_ext(member.name)
                if key is None:
                    continue
                if key not in images and key not in labels:
                    order.append(key)
                extension = extension.lower()
                if extension in IMAGE_MEMBERS and key not in images:
                    images[key] = Sample(shard, key, member.offset_data, member.size, extension)
                elif extension == "cls":
                    handle = tar.extractfile(member)
                    labels[key] = handle.read().decode().strip() if handle is not None else ""
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise ClipAdaptError(f"cannot read the tar shard {path!r}: {exc}") from None
    missing = [key for key in order if key not in images]
    if missing:
        raise ClipAdaptError(f"shard {path!r}: {len(missing)} sample(s) have no image member (first: {missing[0]!r})")
    return [images[key] for key in order], [labels.get(key) for key in order]


def find_beside(shards: list[str], name: str) -> Path | None:
    """``name`` in the first shard's folder or the folder above it (CLIP_benchmark's layout)."""
    folder = Path(shards[0]).resolve().parent
    for candidate in (folder / name, folder.parent / name):
        if candidate.is_file():
            return candidate
    return None


class WebDatasetSource(ImageSource):
    """Images of WebDataset tar shards, indexed once (module docstring)."""

    def __init__(self, spec: str, classnames: list[str] | None = None) -> None:
        self.shards = expand_urls(spec)
        absent = [s for s in self.shards if not os.path.isfile(s)]
        if absent:
            raise ClipAdaptError(f"{len(absent)} of {len(self.shards)} shards do not exist (first: {absent[0]!r})")
        self.samples: list[Sample] = []
        labels: list[str | None] = []
        for number, shard in enumerate(self.shards):
            samples, shard_labels = index_shard(shard, number)
            self.samples += samples
            labels += shard_labels
        if not self.samples:
            raise ClipAdaptError(f"the shards {spec!r} hold no samples")
        names_file = find_beside(self.shards, CLASSNAMES_FILE)
        if classnames is None and names_file is not None:
            classnames = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        self.labels, self.classnames = self._labels(labels, classnames, spec)
        folder = Path(self.shards[0]).resolve().parent
        self.name = folder.name if folder.name not in ("train", "test", "val", "validation") else folder.parent.name
        self.split = None
        self._open: dict[int, io.BufferedReader] = {}  # per process: the shards this loader has open

    @staticmethod
    def _labels(
        labels: list[str | None], classnames: list[str] | None, spec: str
    ) -> tuple[np.ndarray | None, list[str] | None]:
        """The samples' class indices and the class names: ``cls`` members hold indices (into the class
        names) or class names, matched by name (:mod:`clipadapt.data.classes`; without class names, the
        sorted set of the names found)."""
        if all(label is None for label in labels):
            return None, classnames
        unlabelled = sum(label is None for label in labels)
        if unlabelled:
            raise ClipAdaptError(f"{unlabelled} of {len(labels)} samples have no 'cls' member; label all or none")
        texts = [str(label) for label in labels]
        if all(t.lstrip("-").isdigit() for t in texts):
            return np.asarray([int(t) for t in texts], dtype=np.int64), classnames
        if classnames is None:
            classnames = sorted(set(texts))
        return np.asarray(match_labels(texts, classnames, f"the shards {spec!r}"), dtype=np.int64), classnames

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # open files stay with the process that opened them

    def load(self, index: int) -> Image.Image:
        sample = self.samples[index]
        handle = self._open.get(sample.shard)
        if handle is None:
            for other in self._open.values():  # one open shard per loader: chunks are consecutive samples
                other.close()
            self._open = {sample.shard: open(self.shards[sample.shard], "rb")}  # noqa: SIM115 (kept open)
            handle = self._open[sample.shard]
        handle.seek(sample.offset)
        data = handle.read(sample.size)
        if len(data) != sample.size:
            raise UnreadableImage(f"the shard {self.shards[sample.shard]!r} ends inside {sample.key}")
        return open_image(io.BytesIO(data))

    def describe(self, index: int) -> str:
        sample = self.samples[index]
        return f"{self.shards[sample.shard]}:{sample.key}.{sample.extension}"

    def fingerprint(self) -> str:
        stats = [(s, os.stat(s).st_size, os.stat(s).st_mtime_ns) for s in self.shards]
        return _hash([stats, None if self.labels is None else self.labels.tolist()])


def shard_templates(spec: str) -> Prompts | None:
    """The prompts of CLIP_benchmark's ``zeroshot_classification_templates.txt`` beside the shards, if any."""
    path = find_beside(expand_urls(spec), TEMPLATES_FILE)
    return None if path is None else read_prompts(path)
