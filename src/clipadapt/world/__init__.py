"""The offline world: procedural captioned images in a source domain and shifted target domains.

24 classes (:data:`CLASSES`: 8 shapes × 3 fills), each with fine-grained siblings that differ in one
attribute; captions in many phrasings (:mod:`.captions`); seven domains (:mod:`.render`). Everything is
deterministic under a seed; ``size`` sets the image side (64 by default; tests use smaller images).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clipadapt.world.captions import caption, vocabulary
from clipadapt.world.render import DEFAULT_IMBALANCE, DEFAULT_SIZE, DOMAINS, TARGET_DOMAINS, render
from clipadapt.world.scenes import CLASSES, FILLS, SHAPES, Scene, random_scene

# Zero-shot prompts for the world's classes.
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
    labels: np.ndarray  # (N,) index into CLASSES
    captions: list[str]


def class_counts(n: int, imbalance: float = 1.0) -> np.ndarray:
    """Images per class for ``n`` images: uniform, or long-tailed with max/min ratio ``imbalance`` (class 0
    the largest, counts falling geometrically with the class index)."""
    weights = imbalance ** (-np.arange(len(CLASSES)) / (len(CLASSES) - 1))
    counts = np.floor(n * weights / weights.sum()).astype(int)
    counts[: n - counts.sum()] += 1
    return counts


def domain_imbalance(domain: str, imbalance: float | None = None) -> float:
    """The class imbalance a domain is drawn with: ``imbalance`` when given, else the domain's own (1: none)."""
    return DEFAULT_IMBALANCE.get(domain, 1.0) if imbalance is None else imbalance


def make_domain(
    domain: str, n: int, seed: int = 0, size: int = DEFAULT_SIZE, imbalance: float | None = None, stream: int = 0
) -> DomainSample:
    """``n`` captioned images of ``domain`` (deterministic under ``seed``), classes in shuffled order, with the
    domain's class imbalance unless ``imbalance`` is given. Other ``stream`` values draw other images of the
    same world seed (the demo's labelled pool is stream 1)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    rng = np.random.default_rng([seed, list(DOMAINS).index(domain), stream])
    labels = np.repeat(np.arange(len(CLASSES)), class_counts(n, domain_imbalance(domain, imbalance)))
    rng.shuffle(labels)
    scenes = [random_scene(rng, int(label)) for label in labels]
    images = [render(scene, domain, rng, size) for scene in scenes]
    return DomainSample(images, labels, [caption(scene, rng) for scene in scenes])


def folder_name(label: str) -> str:
    """A class's sub-folder name ("striped star" → "striped_star"; the folder reader reads "_" as a space)."""
    return label.replace(" ", "_")


def write_domain_folder(root: str | os.PathLike, sample: DomainSample) -> Path:
    """Write ``sample`` as a folder with one sub-folder per class (the layout ``--dataset`` reads)."""
    root = Path(root)
    for i, (image, label) in enumerate(zip(sample.images, sample.labels, strict=True)):
        folder = root / folder_name(CLASSES[label])
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.png")
    return root


__all__ = [
    "CLASSES",
    "DEFAULT_IMBALANCE",
    "DEFAULT_SIZE",
    "DOMAINS",
    "FILLS",
    "SHAPES",
    "TARGET_DOMAINS",
    "WORLD_TEMPLATES",
    "DomainSample",
    "Scene",
    "caption",
    "class_counts",
    "domain_imbalance",
    "folder_name",
    "make_domain",
    "random_scene",
    "render",
    "vocabulary",
    "write_domain_folder",
]
