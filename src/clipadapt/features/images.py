"""The images behind a FeatureSet's rows, for the methods that tune the encoders (ReCLIP, FAIR)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from clipadapt.backbones.base import Backbone
from clipadapt.data.sources import ImageSource


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
    num_workers: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, index: np.ndarray) -> EncoderInputs:
        return replace(self, rows=self.rows[index])

    def load(self, i: int) -> Any:
        """Row ``i``'s image (PIL, RGB)."""
        return self.source.load(int(self.rows[i]))

    def loader(
        self, transform: Callable[[Any], Any], indices: Sequence[int] | None = None, shuffle: bool = False,
        batch_size: int | None = None,
    ) -> DataLoader:  # fmt: skip
        """Batches of (row indices (B,), transform(image) stacked) over ``indices`` (default: every row)."""
        rows = list(range(len(self))) if indices is None else [int(i) for i in indices]
        return DataLoader(
            _Rows(self, rows, transform), batch_size=batch_size or self.batch_size, shuffle=shuffle,
            num_workers=self.num_workers, drop_last=False,
        )  # fmt: skip


class _Rows(Dataset):
    def __init__(self, inputs: EncoderInputs, rows: list[int], transform: Callable[[Any], Any]) -> None:
        self.inputs, self.rows, self.transform = inputs, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[int, Any]:
        return self.rows[k], self.transform(self.inputs.load(self.rows[k]))
