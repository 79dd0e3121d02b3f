"""Augmented views of every image, drawn reproducibly and extracted once through the feature store.

Two kinds (``VIEW_AUGMENTS``):

- ``crop``: view v of image i is a random resized crop whose box is drawn from a generator seeded by
  (seed, v, i), resized to the backbone's input size as RandomResizedCrop does (the whole box, squeezed to
  a square, bilinear), followed by the backbone's own preprocessing, whose resize and centre crop then leave
  it as it is; the same (seed, v, i) always gives the same crop, whatever the worker or batch order
  (CLIP-Enhance's student views);
- ``flip``: one view, the horizontally mirrored image (CMM's augmentation: a flip with p = 1).

Each view is an ordinary cached, resumable feature-store entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image, ImageOps

from clipadapt.backbones.base import Backbone
from clipadapt.data.sources import ImageSource
from clipadapt.errors import ClipAdaptError
from clipadapt.features.store import FeatureStore
from clipadapt.runtime import hash_seed


def crop_box(
    width: int, height: int, generator: torch.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random crop covering ``scale`` of the area with aspect ``ratio``
    (log-uniform), as torchvision's RandomResizedCrop draws it; the centred largest fitting crop after 10
    failed draws."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


@dataclass(frozen=True)
class RandomCropView:
    """View ``view`` of an image: a seeded random crop resized to ``size`` × ``size`` (RandomResizedCrop),
    then ``preprocess``. Called as (image, index)."""

    preprocess: Callable[[Any], torch.Tensor]
    view: int
    size: int
    seed: int = 0
    scale: tuple[float, float] = (0.6, 0.8)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    takes_index: ClassVar[bool] = True  # the feature store passes each image's index

    def __call__(self, image: Any, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(hash_seed(self.seed, self.view, index))
        box = crop_box(image.width, image.height, generator, self.scale, self.ratio)
        return self.preprocess(image.crop(box).resize((self.size, self.size), Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class FlipView:
    """The horizontally mirrored image, then ``preprocess``."""

    preprocess: Callable[[Any], torch.Tensor]

    def __call__(self, image: Any) -> torch.Tensor:
        return self.preprocess(ImageOps.mirror(image))


VIEW_AUGMENTS = ("crop", "flip")


def check_views(views: int, augment: str) -> None:
    """A clear error for an unknown view kind, or for more than one flipped view (all would be equal)."""
    if augment not in VIEW_AUGMENTS:
        raise ClipAdaptError(f"unknown view augmentation {augment!r}; known: {', '.join(VIEW_AUGMENTS)}")
    if augment == "flip" and views != 1:
        raise ClipAdaptError(f"a flipped view is one view (the mirror image): use --views 1, not {views}")


def extract_views(
    backbone: Backbone,
    source: ImageSource,
    views: int,
    store: FeatureStore,
    seed: int = 0,
    scale: tuple[float, float] = (0.6, 0.8),
    batch_size: int = 64,
    num_workers: int | None = None,
    augment: str = "crop",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """(N, V, D) features of ``views`` augmented views of every image of ``source``, cached per view:
    random resized crops (``augment="crop"``) or the mirror image (``"flip"``, V = 1).

    Rows of images that cannot be read are zero (the caller keeps the readable rows, as for the images).
    """
    check_views(views, augment)
    transforms: list[Callable[..., torch.Tensor]] = (
        [FlipView(backbone.preprocess)]
        if augment == "flip"
        else [RandomCropView(backbone.preprocess, v, backbone.image_size, seed, scale) for v in range(views)]
    )
    out = [store.extract(backbone, source, batch_size, num_workers, t, chunk_size).features for t in transforms]
    return torch.stack(out, dim=1)
