"""Image augmentations shared by a method and the world's measurements.

``strong_view``: DPA's strong view (the one FAIR trains on): RandomResizedCrop to the input size (scale
0.3–1, bicubic), a horizontal flip, timm's RandAugment ``rand-m9-mstd0.5-inc1``. ToyCLIP's card measures
how much zero-shot accuracy survives it (``strong_view_retention``).
"""

from __future__ import annotations

import functools
from typing import Any

from PIL import Image
from timm.data.auto_augment import posterize as timm_posterize
from timm.data.transforms_factory import transforms_imagenet_train
from torchvision import transforms


def strong_view(image_size: int) -> transforms.Compose:
    """PIL image → PIL image of ``image_size``: the strong view of the module docstring."""
    geometric, rand_augment, _ = _timm_stages(image_size)
    return transforms.Compose([geometric, rand_augment])


@functools.cache
def strong_rand_augment(image_size: int) -> transforms.Compose:
    """PIL image → PIL image: the strong view's RandAugment stage alone (no crop, no flip); built once per
    size (it keeps no state: its draws come from Python's and NumPy's global generators)."""
    return _timm_stages(image_size)[1]


def _timm_stages(image_size: int) -> tuple:
    """timm's (geometric, RandAugment, normalising) stages of the strong view, posterize patched."""
    stages = transforms_imagenet_train(
        image_size, scale=(0.3, 1.0), hflip=0.5, color_jitter=0.0, auto_augment="rand-m9-mstd0.5-inc1",
        interpolation="bicubic", separate=True,
    )  # fmt: skip
    for op in stages[1].transforms[0].ops:
        if op.aug_fn is timm_posterize:
            op.aug_fn = posterize
    return stages


def posterize(image: Image.Image, bits: int, **kwargs: Any) -> Image.Image:
    """timm's posterize, with what Pillow < 11 did for 0 bits (a black image): at magnitude 10, which the
    noise of ``mstd0.5`` reaches, timm asks for 0 bits, which Pillow ≥ 11 refuses."""
    return Image.new(image.mode, image.size) if bits < 1 else timm_posterize(image, bits, **kwargs)
