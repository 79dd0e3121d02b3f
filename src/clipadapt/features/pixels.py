"""A backbone's image transform split where the image becomes a tensor: the PIL work (decode, resize, crop)
in loader processes, which then send 8-bit pixels, and the float conversion and normalisation on the device.

A torchvision ``Compose`` that ends in ``ToTensor`` and ``Normalize`` (open_clip's and ToyCLIP's) splits;
the device half computes exactly what ``ToTensor`` + ``Normalize`` compute (x / 255, then (x − mean) / std,
in float32), so the features are the same, while the loaders do less work and send a quarter of the bytes
(uint8 instead of float32) through shared and pinned memory. Other transforms (a Hugging Face image
processor, a random view) are not split and run whole in the loaders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import transforms
from torchvision.transforms.functional import pil_to_tensor


@dataclass(frozen=True)
class HostPixels:
    """The PIL half: ``steps`` (resize, crop, mode conversion), then the image as a (3, H, W) uint8 tensor."""

    steps: tuple[Callable[[Any], Any], ...]

    def __call__(self, image: Any) -> torch.Tensor:
        for step in self.steps:
            image = step(image)
        return pil_to_tensor(image)


@dataclass(frozen=True)
class DeviceNormalize:
    """The tensor half: (B, 3, H, W) uint8 → float32 on ``device``, divided by 255 and normalised."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = pixels.to(device, non_blocking=True).float().div_(255)  # as ToTensor
        mean = torch.tensor(self.mean, dtype=x.dtype, device=device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=device)[:, None, None]
        return x.sub_(mean).div_(std)  # as Normalize


def split_transform(transform: Any) -> tuple[HostPixels, DeviceNormalize] | None:
    """(host half, device half) of ``transform``, or None when it does not end in ToTensor + Normalize."""
    steps = getattr(transform, "transforms", None)
    if not isinstance(transform, transforms.Compose) or not steps or len(steps) < 2:
        return None
    *host, to_tensor, normalize = steps
    if not isinstance(to_tensor, transforms.ToTensor) or not isinstance(normalize, transforms.Normalize):
        return None
    mean, std = (tuple(float(v) for v in torch.as_tensor(x).flatten()) for x in (normalize.mean, normalize.std))
    return HostPixels(tuple(host)), DeviceNormalize(mean, std)
