"""Realistic target sets: episodes of a few classes, and long-tailed subsamples.

A user's unlabelled folder is rarely a benchmark's whole, balanced test split. StatA (Zanella et al., CVPR
2025, arXiv:2501.03729) made this a protocol, which :func:`draw_episode` follows as its official
``BatchSampler`` does (``MaxZanella/StatA``): per episode, K ~ U{K_min..K_max} classes are chosen at random
among those present (all of them when K reaches their number), then B images are drawn uniformly, without
replacement, from all images of those classes (all of them if fewer). Every class name is still given to
the method. :func:`long_tailed_rows` draws a long-tailed subsample: class sizes fall geometrically from
n_max (the smallest class's size, so that every class can supply it) to n_max/ρ, over the classes in a
random order.

Labels are read here only to draw the rows, as StatA's benchmark reads them; the methods receive the rows
without labels (:func:`clipadapt.evaluation.runner.fit_and_predict`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from clipadapt.errors import ClipAdaptError


@dataclass(frozen=True)
class Protocol:
    """Which target set a run adapts on: the whole (test) set, a long-tailed subsample of it, and/or
    ``episodes`` episodes of ``size`` images from ``classes`` = (K_min, K_max) classes."""

    episodes: int = 0  # 0: one target, the whole (or long-tailed) set
    size: int = 64  # B, images per episode
    classes: tuple[int, int] | None = None  # (K_min, K_max); None: every class present
    imbalance: float | None = None  # ρ: largest / smallest class of a long-tailed subsample

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ClipAdaptError(f"--episodes must be at least 0, not {self.episodes}")
        if self.size < 1:
            raise ClipAdaptError(f"--episode_size must be at least 1, not {self.size}")
        if self.classes is not None and not 1 <= self.classes[0] <= self.classes[1]:
            raise ClipAdaptError(f"--episode_classes must be K1-K2 with 1 ≤ K1 ≤ K2, not {self.classes}")
        if self.imbalance is not None and self.imbalance < 1:
            raise ClipAdaptError(f"--imbalance is the largest/smallest class ratio (≥ 1), not {self.imbalance}")

    @property
    def whole(self) -> bool:
        return self.episodes == 0 and self.imbalance is None

    def record(self) -> dict[str, object]:
        """What a result JSON keeps of the protocol."""
        return {"episodes": self.episodes, "episode_size": self.size if self.episodes else None,
                "episode_classes": list(self.classes) if self.episodes and self.classes else None,
                "imbalance": self.imbalance}  # fmt: skip

    def label(self) -> str:
        """A short name for tables: ``whole set``, ``long-tailed ρ=10``, ``64 images, 1–4 classes (×10)``."""
        parts = [] if self.imbalance is None else [f"long-tailed ρ={self.imbalance:g}"]
        if self.episodes:
            classes = "all classes" if self.classes is None else f"{self.classes[0]}–{self.classes[1]} classes"
            parts.append(f"{self.size} images, {classes} (×{self.episodes})")
        return ", ".join(parts) or "whole set"


def parse_classes(text: str | None) -> tuple[int, int] | None:
    """``"1-4"`` → (1, 4); ``"5"`` → (5, 5); None → None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[-–]\s*(\d+))?\s*", text)
    if not match:
        raise ClipAdaptError(f"--episode_classes takes K or K1-K2 (e.g. 1-4), not {text!r}")
    low = int(match.group(1))
    return low, int(match.group(2) or low)


def protocol_from_record(record: dict[str, object]) -> Protocol:
    """The protocol a result record ran under (the whole set for records that predate protocols)."""
    raw = record.get("protocol") or {}
    assert isinstance(raw, dict)
    classes = raw.get("episode_classes")
    return Protocol(int(raw.get("episodes") or 0), int(raw.get("episode_size") or 64),
                    None if classes is None else (int(classes[0]), int(classes[1])), raw.get("imbalance"))  # fmt: skip


def draw_episode(
    labels: np.ndarray, size: int, classes: tuple[int, int] | None, rng: np.random.Generator
) -> np.ndarray:
    """Row indices of one episode (StatA's ``BatchSampler``), shuffled.

    Args:
        labels: (N,) class of every row; classes: (K_min, K_max), or None for every class present.
    Returns:
        (min(size, rows of the chosen classes),) indices into ``labels``.
    """
    present = np.unique(labels)
    chosen = present
    if classes is not None:
        k = int(rng.integers(classes[0], classes[1] + 1))
        if k < len(present):
            chosen = rng.choice(present, k, replace=False)
    pool = np.flatnonzero(np.isin(labels, chosen))
    rows = pool if len(pool) <= size else rng.choice(pool, size, replace=False)
    return rng.permutation(rows)


def long_tailed_rows(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices of a long-tailed subsample: the class ranked r of C (in a random order) keeps
    round(n_max · ρ^(−r/(C−1))) of its rows (at least one), n_max the smallest class's size."""
    present = np.unique(labels)
    n_max = int(min((labels == c).sum() for c in present))
    order = rng.permutation(present)
    steps = max(len(present) - 1, 1)
    kept = []
    for rank, c in enumerate(order):
        n = max(1, round(n_max * ratio ** (-rank / steps)))
        kept.append(rng.choice(np.flatnonzero(labels == c), n, replace=False))
    return np.sort(np.concatenate(kept))


def target_sets(labels: np.ndarray, protocol: Protocol, seed: int) -> list[np.ndarray]:
    """The row indices of every target set of ``protocol`` for ``seed``: one set (the whole, or its
    long-tailed subsample), or ``protocol.episodes`` episodes drawn from it."""
    rng = np.random.default_rng(seed)
    base = np.arange(len(labels)) if protocol.imbalance is None else long_tailed_rows(labels, protocol.imbalance, rng)
    if not protocol.episodes:
        return [base]
    return [base[draw_episode(labels[base], protocol.size, protocol.classes, rng)] for _ in range(protocol.episodes)]
