"""Generated CLIP-like feature problems, for development and tests: methods are developed on
generated problems, never on the evaluation data.

A problem is a :class:`~clipadapt.features.featureset.FeatureSet` of N image features and C class
prototypes in D = 512 dimensions (CLIP ViT-B's), built to have the statistics the label-free methods'
constants assume of CLIP (measured on the shared WHU-RS19 files: zero-shot top-1 0.71–0.95 with a mean max
softmax probability at logit scale 100 of 0.61–0.93, slightly under-confident; mean cosine of an image to
its nearest prototype 0.22–0.34; see :func:`clip_statistics` and ``benchmarks/synthetic_problems.py``).

Construction. Class semantics live in an r-dimensional subspace (r = 64) of the D dimensions: each class
has a mean m_c there, made of a direction every class shares (what makes all of CLIP's cosines alike),
its group's direction (siblings near each other) and its own. An image of class c is
m_c + σ_img·(semantic noise) + a shared image-modality offset + isotropic noise in all D dimensions; a
class prototype is m_c + σ_text·(semantic noise, drawn once per class) + a shared text-modality offset
(the modality gap) + isotropic noise. The prototype's semantic noise puts it off its images' centre,
towards or away from its siblings: zero-shot's errors; the images' isotropic noise lowers every cosine:
zero-shot's confidence at scale 100; the images' semantic noise against the prototypes' sets how much an
image-side (transductive) method can gain. ``coverage`` and ``imbalance`` draw realistic label
distributions: a share of the classes absent, long tails.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels.metrics import clip_statistics as cosine_statistics


@dataclass(frozen=True)
class ProblemSpec:
    """What a generated problem looks like (defaults: a CLIP-like problem of moderate difficulty)."""

    classes: int = 40
    images: int = 2000
    dim: int = 512
    semantic_dim: int = 64
    shared: float = 0.5  # how much of every class's semantic direction all classes share ("a photo of")
    groups: int = 8  # sibling groups of classes
    sibling: float = 0.7  # how much of the rest a class shares with its group
    image_spread: float = 0.3  # semantic noise of an image around its class mean
    image_class: float = 0.7  # weight of each class's image-only direction (what text does not describe)
    text_noise: float = 0.5  # semantic noise of a prototype around its images' mean
    image_noise: float = 2.0  # isotropic noise of an image (all D dimensions), relative to the semantics
    text_noise_iso: float = 0.3  # isotropic noise of a prototype
    image_gap: float = 0.5  # the image side's modality offset (one direction shared by every image)
    text_gap: float = 0.9  # the text side's (another direction, shared by every prototype)
    coverage: float = 1.0  # share of the classes that have images
    imbalance: float = 1.0  # largest / smallest class among those present (geometric)
    seed: int = 100


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return F.normalize(rows, dim=-1)


def class_counts(spec: ProblemSpec, g: torch.Generator) -> torch.Tensor:
    """(C,) images per class: the present classes (a ``coverage`` share, chosen at random) share
    ``images`` with a geometric fall of ratio ``imbalance`` in a random order; absent classes have none."""
    present = max(1, round(spec.coverage * spec.classes))
    chosen = torch.randperm(spec.classes, generator=g)[:present]
    ranks = torch.arange(present, dtype=torch.float64) / max(present - 1, 1)
    weights = spec.imbalance ** (-ranks)
    counts = torch.zeros(spec.classes, dtype=torch.long)
    counts[chosen] = torch.clamp((weights / weights.sum() * spec.images).round().long(), min=1)
    return counts


def generate_problem(spec: ProblemSpec = ProblemSpec()) -> FeatureSet:
    """A labelled CLIP-like problem (module docstring), reproducible from ``spec.seed``."""
    g = torch.Generator().manual_seed(spec.seed)
    d, r, c = spec.dim, spec.semantic_dim, spec.classes
    # the semantic subspace, the image-only subspace and the two modality directions, orthonormal
    basis = torch.linalg.qr(torch.randn(d, 2 * r + 2, generator=g))[0]
    semantic, image_only = basis[:, :r], basis[:, r : 2 * r]
    image_side, text_side = basis[:, 2 * r], basis[:, 2 * r + 1]
    groups = _unit(torch.randn(spec.groups, r, generator=g))
    group_of = torch.randint(0, spec.groups, (c,), generator=g)
    own = _unit(torch.randn(c, r, generator=g))
    specific = _unit(spec.sibling**0.5 * groups[group_of] + (1 - spec.sibling) ** 0.5 * own)
    common = _unit(torch.randn(1, r, generator=g))
    means = _unit(spec.shared**0.5 * common + (1 - spec.shared) ** 0.5 * specific)  # (C, r)

    counts = class_counts(spec, g)
    labels = torch.repeat_interleave(torch.arange(c), counts)
    labels = labels[torch.randperm(len(labels), generator=g)]
    n = len(labels)
    scale = (1 - spec.shared) ** 0.5  # semantic noise is relative to what tells the classes apart
    image_semantics = means[labels] + scale * spec.image_spread * torch.randn(n, r, generator=g) / r**0.5
    visual = _unit(torch.randn(c, r, generator=g))  # each class's image-only direction
    images = (image_semantics @ semantic.T + spec.image_class * visual[labels] @ image_only.T
              + spec.image_gap * image_side + spec.image_noise * torch.randn(n, d, generator=g) / d**0.5)  # fmt: skip
    text_semantics = means + scale * spec.text_noise * torch.randn(c, r, generator=g) / r**0.5
    text = (text_semantics @ semantic.T + spec.text_gap * text_side
            + spec.text_noise_iso * torch.randn(c, d, generator=g) / d**0.5)  # fmt: skip
    return FeatureSet(
        image_features=_unit(images).float(),
        text_features=_unit(text).float(),
        labels=labels,
        classnames=[f"class {i}" for i in range(c)],
        model="synthetic-clip",
        pretrained=f"seed{spec.seed}",
        dataset="synthetic",
    )


@torch.no_grad()
def clip_statistics(features: FeatureSet) -> dict[str, float]:
    """:func:`clipadapt.kernels.metrics.clip_statistics` of a problem's zero-shot cosines."""
    x, t = features.normalised()
    return cosine_statistics(x @ t.T, features.labels)
