"""The offline world: procedural captioned images in a source domain and shifted target domains."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clipadapt.world.captions import caption, vocabulary
from clipadapt.world.render import DOMAINS, SHAPES, TARGET_DOMAINS, Scene, random_scene, render

# Zero-shot prompts for the world's classes (the shapes).
WORLD_TEMPLATES = [
    "a photo of a {c}.",
    "a {c}.",
    "a picture of a {c}.",
    "an image showing a {c}.",
    "a drawing of a {c}.",
]


@dataclass
class DomainSample:
    images: list[Image.Image]
    labels: np.ndarray  # (N,) index into SHAPES
    captions: list[str]


def class_counts(n: int, imbalance: float = 1.0) -> np.ndarray:
    """Images per class for ``n`` images: uniform, or long-tailed with max/min ratio ``imbalance``."""
    weights = imbalance ** (-np.arange(len(SHAPES)) / (len(SHAPES) - 1))
    counts = np.floor(n * weights / weights.sum()).astype(int)
    counts[: n - counts.sum()] += 1
    return counts


def make_domain(domain: str, n: int, seed: int = 0, size: int = 32, imbalance: float = 1.0) -> DomainSample:
    """``n`` captioned images of ``domain`` (deterministic under ``seed``), classes in shuffled order."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    rng = np.random.default_rng([seed, list(DOMAINS).index(domain)])
    labels = np.repeat(np.arange(len(SHAPES)), class_counts(n, imbalance))
    rng.shuffle(labels)
    scenes = [random_scene(rng, SHAPES[label]) for label in labels]
    images = [render(scene, domain, rng, size) for scene in scenes]
    return DomainSample(images, labels, [caption(scene, rng) for scene in scenes])


def write_domain_folder(root: str | os.PathLike, sample: DomainSample) -> Path:
    """Write ``sample`` as a folder with one sub-folder per class (the layout ``--dataset`` reads)."""
    root = Path(root)
    for i, (image, label) in enumerate(zip(sample.images, sample.labels, strict=True)):
        folder = root / SHAPES[label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.png")
    return root


__all__ = [
    "DOMAINS",
    "SHAPES",
    "TARGET_DOMAINS",
    "WORLD_TEMPLATES",
    "DomainSample",
    "Scene",
    "caption",
    "class_counts",
    "make_domain",
    "render",
    "vocabulary",
    "write_domain_folder",
]
