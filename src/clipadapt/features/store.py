"""FeatureStore: image features extracted once, cached on disk, resumable after an interruption.

Layout of one entry, ``<root>/<key>/``: ``meta.json`` (what the key stands for) and ``chunk-XXXXX.npz``
files of ``chunk_size`` consecutive images each (``features`` (n, D) float32, ``valid`` (n,) bool,
``failed``/``reasons`` for unreadable images). Each chunk is written atomically as soon as it is complete,
so an interrupted extraction resumes at the first missing chunk. The key hashes the backbone identity
(library, model, pretrained tag, weights fingerprint), the image transform, and the data source's
fingerprint (items, labels, split), so changing any of them never returns stale features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from clipadapt import distributed
from clipadapt.backbones.base import Backbone, describe_transform
from clipadapt.data.sources import ImageSource, UnreadableImage, exception_detail
from clipadapt.errors import ClipAdaptError
from clipadapt.features.pixels import split_transform
from clipadapt.io import atomic_path, write_json
from clipadapt.progress import progress

log = logging.getLogger("clipadapt")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLIPADAPT_CACHE", Path.home() / ".cache" / "clipadapt")) / "features"


@dataclass
class ExtractedImages:
    features: torch.Tensor  # (N, D) float32; rows of unreadable images are zero (D = 0 if none is readable)
    valid: np.ndarray  # (N,) bool
    failures: list[tuple[int, str]]  # (index, reason) of unreadable images

    def summary(self, source: ImageSource, limit: int = 3) -> str:
        shown = "; ".join(f"{source.describe(i)}: {reason}" for i, reason in self.failures[:limit])
        more = f" (+{len(self.failures) - limit} more)" if len(self.failures) > limit else ""
        return f"skipped {len(self.failures)} unreadable image(s) of {len(self.valid)}: {shown}{more}"


class ImageDataset(Dataset):
    """Item ``i`` → (i, transformed image or None, failure reason or None)."""

    def __init__(self, source: ImageSource, transform: Callable[[Any], torch.Tensor]) -> None:
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = self.source.load(index)
            # a seeded random view (features/views.py) takes the index, to draw the same crop every time
            takes_index = getattr(self.transform, "takes_index", False)
            return index, self.transform(image, index) if takes_index else self.transform(image), None
        except UnreadableImage as exc:
            return index, None, str(exc)
        except (OSError, ValueError) as exc:  # decoding errors that surface inside the transform
            return index, None, f"cannot decode the image ({exception_detail(exc)})"


def collate_images(
    batch: list[tuple[int, torch.Tensor | None, str | None]],
) -> tuple[list[int], torch.Tensor | list[torch.Tensor] | None, list[tuple[int, str]]]:
    """(indices, pixels, failures) of a batch: the pixels stacked, or a list when their sizes differ
    (decoded images that the device resizes)."""
    ok = [(i, x) for i, x, err in batch if err is None]
    failed = [(i, err) for i, _, err in batch if err is not None]
    images = [x for _, x in ok]
    if not images or any(x.shape != images[0].shape for x in images):
        return [i for i, _ in ok], images or None, failed
    # default_collate stacks straight into shared memory inside a worker: no extra copy between processes
    return [i for i, _ in ok], default_collate(images), failed


class FeatureStore:
    """Caches extracted image features under ``root`` (default ``~/.cache/clipadapt/features``)."""

    def __init__(self, root: str | os.PathLike | None = None, resize_on_device: bool | None = None) -> None:
        """``resize_on_device``: loaders only decode and the device resizes and crops, bit for bit as Pillow
        (:mod:`clipadapt.features.pixels`); None (default): on CUDA, where loaders fall behind the encoder."""
        self.root = Path(root) if root is not None else default_cache_dir()
        self.resize_on_device = resize_on_device

    @staticmethod
    def key_fields(backbone: Backbone, source: ImageSource, transform: object) -> dict[str, Any]:
        return {
            "backbone": {**backbone.identity(), "transform": describe_transform(transform)},
            "precision": {"autocast": backbone.policy.autocast, "tf32": backbone.policy.tf32},  # bf16 ≠ fp32
            "dataset": source.name,
            "split": getattr(source, "split", None),
            "source": source.fingerprint(),
            "num_images": len(source),
        }

    @staticmethod
    def key(fields: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]

    def extract(
        self,
        backbone: Backbone,
        source: ImageSource,
        batch_size: int = 64,
        num_workers: int | None = None,
        transform: Callable[[Any], torch.Tensor] | None = None,
        chunk_size: int | None = None,
    ) -> ExtractedImages:
        """Features of every image of ``source``, reusing and completing whatever the cache holds.

        Under torchrun (:mod:`clipadapt.distributed`) every rank encodes its share of the missing chunks
        (the i-th missing chunk goes to rank i mod N) on its own device, and every rank returns the complete entry.
        """
        if chunk_size is not None and chunk_size < 1:
            raise ClipAdaptError(f"the chunk size must be at least 1, not {chunk_size}")
        transform = transform or backbone.preprocess
        fields = self.key_fields(backbone, source, transform)
        entry = self.root / self.key(fields)
        meta_path = entry / "meta.json"
        distributed.start(backbone.device)
        here = distributed.ranks()
        if here.main and not meta_path.exists():
            chunk_size = chunk_size or max(batch_size, (1024 // batch_size) * batch_size)
            write_json(meta_path, {**fields, "chunk_size": chunk_size})
        distributed.barrier()  # the entry's chunk size is on disk for every rank
        chunk_size = int(json.loads(meta_path.read_text())["chunk_size"])
        n = len(source)
        n_chunks = (n + chunk_size - 1) // chunk_size
        pending = [c for c in range(n_chunks) if not _chunk_path(entry, c).exists()]
        distributed.barrier()  # every rank has listed the same missing chunks before any is written
        if here.main and len(pending) < n_chunks:
            done = n_chunks - len(pending)
            if pending:
                log.info("resuming the extraction of %s: %d of %d chunks already cached (%s)", source.name, done,
                         n_chunks, entry)  # fmt: skip
            else:
                log.info("using the cached features of %s (%s)", source.name, entry)
        mine = pending[here.rank :: here.world]
        if pending and here.world > 1:
            log.debug("rank %d of %d encodes chunks %s of %s", here.rank, here.world, mine, entry.name)
        if mine:
            on_device = backbone.device.type == "cuda" if self.resize_on_device is None else self.resize_on_device
            _extract_chunks(backbone, source, transform, entry, mine, chunk_size, batch_size, num_workers, on_device)
        distributed.barrier()  # every chunk is written
        return _assemble(entry, n_chunks)


def _chunk_path(entry: Path, chunk: int) -> Path:
    return entry / f"chunk-{chunk:05d}.npz"


def default_num_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _batches(pending: list[int], chunk_size: int, batch_size: int, n: int) -> Iterator[list[int]]:
    """Batches of indices that never straddle two chunks."""
    for chunk in pending:
        stop = min((chunk + 1) * chunk_size, n)
        for start in range(chunk * chunk_size, stop, batch_size):
            yield list(range(start, min(start + batch_size, stop)))


def _extract_chunks(
    backbone: Backbone,
    source: ImageSource,
    transform: Callable[[Any], torch.Tensor],
    entry: Path,
    pending: list[int],
    chunk_size: int,
    batch_size: int,
    num_workers: int | None,
    resize_on_device: bool = False,
) -> None:
    """Encode the images of the ``pending`` chunks and write each chunk file as soon as it is complete.

    Loader processes decode, resize and crop; with a transform that splits (:mod:`clipadapt.features.pixels`)
    they send uint8 pixels that are normalised on the device (with ``resize_on_device``, decoded images
    that the device also resizes and crops). Features go back to the host without waiting
    for the device (into pinned memory on CUDA), and a writer thread saves each finished chunk, so the
    encoder never waits for the disk.
    """
    n = len(source)
    workers = default_num_workers() if num_workers is None else num_workers
    split = split_transform(transform, resize_on_device)
    host_transform, to_device = split if split is not None else (transform, None)
    loader = DataLoader(
        ImageDataset(source, host_transform),
        batch_sampler=list(_batches(pending, chunk_size, batch_size, n)),
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=backbone.device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
    )
    bar = progress(loader, desc=f"extracting {source.name}", total=len(loader.batch_sampler), unit="batch")
    chunk: _ChunkBuffer | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipadapt-cache") as writer:
        written: list[Future] = []
        for indices, pixels, failed in bar:  # batches arrive in order and never straddle two chunks
            number = (indices or [i for i, _ in failed])[0] // chunk_size
            if chunk is None or chunk.number != number:
                chunk = _ChunkBuffer(number, number * chunk_size, min(chunk_size, n - number * chunk_size))
            features = None
            if pixels is not None:
                features = backbone.encode_images(pixels if to_device is None else to_device(pixels, backbone.device))
            chunk.add(indices, features, failed)
            if chunk.complete:
                written.append(writer.submit(chunk.write, _chunk_path(entry, number), _ready(backbone.device)))
                if written[0].done():  # a failed write (a full disk, say) stops the run at once
                    written.pop(0).result()
        for future in written:
            future.result()


def _ready(device: torch.device) -> Callable[[], None]:
    """Something to call, from any thread, that returns once the copies queued so far on ``device`` are done."""
    if device.type == "cuda":
        event = torch.cuda.Event()
        event.record()
        return event.synchronize
    if device.type == "mps":
        torch.mps.synchronize()
    return lambda: None


@dataclass
class _ChunkBuffer:
    """Features of ``size`` consecutive images starting at ``start``, filled batch by batch."""

    number: int
    start: int
    size: int
    parts: list[tuple[np.ndarray, torch.Tensor]] = field(default_factory=list)  # (rows, host copy of features)
    failed: list[tuple[int, str]] = field(default_factory=list)
    seen: int = 0

    def add(self, indices: list[int], features: torch.Tensor | None, failed: list[tuple[int, str]]) -> None:
        """``features``: (B, D) on the backbone's device; copied to the host without waiting for the device."""
        if features is not None:
            host = torch.empty(features.shape, dtype=features.dtype, pin_memory=features.is_cuda)
            host.copy_(features, non_blocking=True)
            self.parts.append((np.asarray(indices) - self.start, host))
        self.failed.extend(failed)
        self.seen += len(indices) + len(failed)

    @property
    def complete(self) -> bool:
        return self.seen == self.size

    def write(self, path: Path, ready: Callable[[], None]) -> None:
        """Wait for the copies (``ready``), then write the chunk file atomically."""
        ready()
        dim = self.parts[0][1].shape[1] if self.parts else 0
        features = np.zeros((self.size, dim), np.float32)
        valid = np.zeros(self.size, dtype=bool)
        for rows, host in self.parts:
            features[rows] = host.numpy()
            valid[rows] = True
        failed = sorted(self.failed)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                features=features,
                valid=valid,
                failed=np.array([i for i, _ in failed], dtype=np.int64),
                reasons=np.array([r for _, r in failed], dtype=str),
            )


def _assemble(entry: Path, n_chunks: int) -> ExtractedImages:
    parts, valid, failures = [], [], []
    dim = 0
    for c in range(n_chunks):
        with np.load(_chunk_path(entry, c)) as z:
            parts.append(z["features"])
            valid.append(z["valid"])
            failures.extend(zip(z["failed"].tolist(), z["reasons"].tolist(), strict=True))
            dim = max(dim, z["features"].shape[1])
    features = np.concatenate(
        [p if p.shape[1] == dim else np.zeros((len(v), dim), np.float32) for p, v in zip(parts, valid, strict=True)]
    )
    return ExtractedImages(torch.from_numpy(features), np.concatenate(valid), failures)
