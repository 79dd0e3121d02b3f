"""The images behind a FeatureSet's rows, for the methods that tune the encoders (ReCLIP, FAIR).

They reach the images in batches, every epoch: :meth:`EncoderInputs.loader` (raw: whatever the transform
returns, for FAIR's weak and strong views) or :meth:`EncoderInputs.batches` (preprocessed pixels on the
device). A method that preprocesses the same way every epoch (ReCLIP) can decode the images once
(:meth:`EncoderInputs.decode`: 8-bit pixels kept in memory up to ``MEMORY_PIXELS_BYTES``) and serve every
later pass from memory; the pixels are the same either way, so the results are too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from clipadapt.backbones.base import Backbone
from clipadapt.data.sources import ImageSource
from clipadapt.features.pixels import split_transform
from clipadapt.progress import progress
from clipadapt.runtime import hash_seed, seeded_randomness

log = logging.getLogger("clipadapt")
MEMORY_PIXELS_BYTES = 4 * 2**30  # decoded 8-bit pixels kept in memory for a whole fit, at most


@dataclass
class EncoderInputs:
    """The images behind a FeatureSet's rows, the backbone and each class's prompt sentences.

    Methods reach images only through :meth:`load` and :meth:`loader`; the source's labels stay unread.
    """

    backbone: Backbone
    source: ImageSource
    rows: np.ndarray  # (N,) index into ``source`` of each feature row
    sentences: list[list[str]]  # C lists of prompts (templates filled in, or class descriptions)
    batch_size: int = 64
    num_workers: int = 0  # image loading processes (decoding and augmenting off the main process)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, index: np.ndarray) -> EncoderInputs:
        return replace(self, rows=self.rows[index])

    def load(self, i: int) -> Any:
        """Row ``i``'s image (PIL, RGB)."""
        return self.source.load(int(self.rows[i]))

    def loader(
        self,
        transform: Callable[[Any], Any],
        shuffle: bool = False,
        batch_size: int | None = None,
        random_transform: bool = False,
    ) -> DataLoader:
        """Batches of (row indices (B,), transform(image) stacked) over every row, in order or shuffled.

        The loader can be iterated once per epoch: its worker processes stay up between passes, and every
        pass reshuffles. With ``random_transform`` (an augmentation), each image's random draws are seeded
        by the pass and the row (both drawn in this process from torch's generator, i.e. the run's seed),
        so they do not depend on the number of workers or on which worker loads the image. Batches are
        pinned when the backbone is on CUDA (their copies to the device do not wait).
        """
        return self._passes(_Rows(self, transform), batch_size, shuffle, random_transform, self.num_workers)

    def batches(
        self,
        transform: Callable[[Any], torch.Tensor],
        shuffle: bool = False,
        batch_size: int | None = None,
        pixels: torch.Tensor | None = None,
    ) -> Batches:
        """Every pass: (row positions (B,), pixels (B, 3, S, S) float32 on the backbone's device), in order or
        shuffled, from ``transform`` (a deterministic one) or from ``pixels`` that :meth:`decode` kept."""
        split = split_transform(transform)
        if pixels is not None and split is not None:
            loader = self._passes(_MemoryRows(pixels), batch_size, shuffle, False, workers=0)
        else:
            rows = _Rows(self, transform if split is None else split[0])
            loader = self._passes(rows, batch_size, shuffle, False, self.num_workers)
        return Batches(loader, None if split is None else split[1], self.backbone.device)

    def _passes(
        self, dataset: Dataset, batch_size: int | None, shuffle: bool, seeded: bool, workers: int
    ) -> DataLoader:
        """A loader for one pass per iteration over every row (:class:`PassSampler`), its workers kept up
        between passes, its batches pinned when the backbone is on CUDA."""
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=PassSampler(len(self), shuffle, seeded),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.backbone.device.type == "cuda",
        )

    def decode(self, transform: Callable[[Any], torch.Tensor]) -> torch.Tensor | None:
        """(N, 3, S, S) uint8: every row's image through the PIL half of ``transform``, decoded once (in the
        loader processes) to serve every later pass of :meth:`batches` from memory; None when the transform
        does not split (:mod:`clipadapt.features.pixels`) or the pixels would take more than
        ``MEMORY_PIXELS_BYTES``."""
        split = split_transform(transform)
        size = self.backbone.image_size
        if split is None or len(self) * 3 * size * size > MEMORY_PIXELS_BYTES:
            log.info("decoding the %d images every epoch (they would not stay in memory)", len(self))
            return None
        out = torch.empty(len(self), 3, size, size, dtype=torch.uint8)
        loader = DataLoader(_Rows(self, split[0]), batch_size=self.batch_size, num_workers=self.num_workers)
        for rows, pixels in progress(loader, desc="decoding", unit="batch"):
            out[rows] = pixels
        return out


class Batches:
    """A pass over an :class:`EncoderInputs`' rows per iteration: (row positions (B,) on the CPU, float32
    pixels (B, 3, S, S) on ``device``); 8-bit pixels are normalised on the device by ``finish``."""

    def __init__(self, loader: DataLoader, finish: Callable[[torch.Tensor, torch.device], torch.Tensor] | None,
                 device: torch.device) -> None:  # fmt: skip
        self.loader, self.finish, self.device = loader, finish, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for rows, pixels in self.loader:
            if self.finish is not None:
                yield rows, self.finish(pixels, self.device)
            else:
                yield rows, pixels.to(self.device, non_blocking=True)


class _MemoryRows(Dataset):
    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor]:
        return k, self.pixels[k]


class PassSampler(Sampler):
    """Every pass over ``n`` rows: their positions in order, or shuffled, each paired with the pass's
    augmentation seed when ``seeded``.

    Both are drawn in the main process from a generator of the sampler's own, seeded once from torch's
    (the run's seed) when the sampler is made: the DataLoader draws from torch's generator too, as many
    times as it starts worker iterators, and that count depends on the number of workers."""

    def __init__(self, n: int, shuffle: bool, seeded: bool) -> None:
        self.n, self.shuffle, self.seeded = n, shuffle, seeded
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist() if self.shuffle else range(self.n)
        if not self.seeded:
            return iter(order)
        seed = int(torch.randint(0, 2**62, (), generator=self.generator))
        return iter([(k, seed) for k in order])


class _Rows(Dataset):
    def __init__(self, inputs: EncoderInputs, transform: Callable[[Any], Any]) -> None:
        self.inputs, self.transform = inputs, transform

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[int, Any]:
        k, seed = item if isinstance(item, tuple) else (item, None)
        image = self.inputs.load(k)
        if seed is None:
            return k, self.transform(image)
        with seeded_randomness(hash_seed(seed, k)):
            return k, self.transform(image)
