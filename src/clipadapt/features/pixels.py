"""A backbone's image transform split between loader processes (PIL work, 8-bit pixels) and the device.

A torchvision ``Compose`` that ends in ``ToTensor`` and ``Normalize`` (open_clip's and ToyCLIP's) splits;
the device half computes exactly what ``ToTensor`` + ``Normalize`` compute (x / 255, then (x − mean) / std,
in float32), so the features are the same, while the loaders do less work and send a quarter of the bytes
(uint8 instead of float32) through shared and pinned memory. Other transforms (a Hugging Face image
processor, a random view) are not split and run whole in the loaders.

With ``resize_on_device`` (what extraction asks for on CUDA, where a dozen loader processes cannot keep up
with the encoder: Pillow's antialiased resize takes ~3.3 ms of the ~4.3 ms a 500 × 375 JPEG costs a
loader), a transform that resizes the short side with bicubic interpolation and centre-crops to that same
size (open_clip's, ToyCLIP's) splits earlier: the loaders only decode, and :class:`PillowResizeCrop`
resizes and crops on the device *as Pillow does*, bit for bit (its fixed-point filter, a horizontal and
a vertical pass in the installed Pillow's order, each rounded to 8 bits), so the features stay those of
the reference preprocessing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms.functional import InterpolationMode, pil_to_tensor, to_pil_image

PRECISION_BITS = 22  # Pillow's fixed-point precision of 8-bit resampling: 32 - 8 - 2
FLOAT64_PIXELS = 2**27  # images resized together hold at most this many pixel values (1 GiB in float64)


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


def pillow_bicubic(x: float) -> float:
    """Pillow's bicubic kernel (a = −0.5), written as Pillow writes it so that every double rounds alike."""
    a = -0.5
    x = -x if x < 0.0 else x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=512)
def pillow_weights(in_size: int, out_size: int, first: int, count: int) -> tuple[tuple[int, ...], ...]:
    """Pillow's fixed-point weights (``precompute_coeffs`` and ``normalize_coeffs_8bpc``) of output pixels
    ``first`` … ``first + count − 1`` of a bicubic resize of ``in_size`` pixels to ``out_size``, as one row
    of ``in_size`` integer weights per output pixel (zero outside its support)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    rows = []
    for xx in range(first, first + count):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [pillow_bicubic((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
        fixed = [int(-0.5 + w * (1 << PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << PRECISION_BITS))
                 for w in weights]  # fmt: skip
        rows.append((0,) * xmin + tuple(fixed) + (0,) * (in_size - xmin - xmax))
    return tuple(rows)


@dataclass(frozen=True)
class PillowResizeCrop:
    """torchvision's ``Resize(size, BICUBIC)`` of a PIL image (the short side to ``size``) then
    ``CenterCrop(size)``, computed on the device on (3, H, W) uint8 images, exactly as Pillow computes them.

    Each pass is one matrix product with Pillow's integer weights in float64 (every product and sum of
    8-bit pixels and 22-bit weights is an exact integer there), then Pillow's rounding: floor((s + 2²¹) / 2²²)
    clipped to 0…255; the passes run in the installed Pillow's order (:func:`pillow_pass_order`), and only
    the cropped columns and rows are computed.
    """

    size: int

    def geometry(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(resized height, resized width, crop top, crop left), as torchvision computes them."""
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.size, int(self.size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        return new_h, new_w, round((new_h - self.size) / 2.0), round((new_w - self.size) / 2.0)  # as CenterCrop

    def __call__(self, images: Sequence[torch.Tensor] | torch.Tensor, device: torch.device) -> torch.Tensor:
        """B images (3, H_i, W_i) uint8 (a list, or one (B, 3, H, W) tensor) → (B, 3, size, size) uint8 on
        ``device``; images of one size are resized together."""
        out = torch.empty(len(images), 3, self.size, self.size, dtype=torch.uint8, device=device)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape[-2:]), []).append(i)
        for (height, width), members in groups.items():
            step = max(1, FLOAT64_PIXELS // (3 * height * width))  # a bounded float64 copy per product
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                # each image (pinned by the loader on CUDA) is copied without waiting, then stacked on the device
                batch = torch.stack([images[i].to(device, non_blocking=True) for i in chunk])
                out[torch.tensor(chunk).to(device, non_blocking=True)] = self._resize(batch, height, width)
        return out

    def _resize(self, batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
        new_h, new_w, top, left = self.geometry(height, width)
        vertical_first = pillow_pass_order() == "vertical first when reduced more" and (
            height - new_h > 0 and height - new_h > (width - new_w) * 2
        )
        window = ((top, self.size), (left, self.size))
        return pillow_resize(batch.to(torch.float64), new_h, new_w, window, vertical_first).to(torch.uint8)


def pillow_resize(
    x: torch.Tensor, new_h: int, new_w: int, window: tuple[tuple[int, int], tuple[int, int]], vertical_first: bool
) -> torch.Tensor:
    """Pillow's bicubic resize of float64 8-bit pixels (…, H, W) to (new_h, new_w), keeping only the output
    rows and columns of ``window`` ((first row, count), (first column, count)): a horizontal and a vertical
    pass, in that order or the other, each skipped when its size does not change, each rounded to 8 bits."""
    height, width = x.shape[-2:]
    (top, rows), (left, columns) = window
    for axis in ("vertical", "horizontal") if vertical_first else ("horizontal", "vertical"):
        if axis == "horizontal":
            x = (
                x.narrow(-1, left, columns)
                if new_w == width
                else _round_8bit(x @ _weights(width, new_w, left, columns, x).T)
            )
        else:
            x = x.narrow(-2, top, rows) if new_h == height else _round_8bit(_weights(height, new_h, top, rows, x) @ x)
    return x


def _weights(in_size: int, out_size: int, first: int, count: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(pillow_weights(in_size, out_size, first, count), dtype=like.dtype, device=like.device)


@functools.cache
def pillow_pass_order() -> str | None:
    """Which of Pillow's two pass orders the installed Pillow follows, found once on two small probe images:
    ``"horizontal first"`` (Pillow before the change), ``"vertical first when reduced more"`` (newer Pillow:
    the vertical pass first when the height shrinks by more than twice as many pixels as the width), or None
    when neither reproduces Pillow exactly (then nothing is resized on the device)."""
    generator = torch.Generator().manual_seed(0)
    matches = {}
    for width, height, new_w, new_h in ((120, 40, 40, 36), (40, 120, 36, 40)):  # horizontal first, then either
        pixels = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        expected = pil_to_tensor(to_pil_image(pixels).resize((new_w, new_h), Image.Resampling.BICUBIC))
        for vertical_first in (False, True):
            ours = pillow_resize(pixels.to(torch.float64), new_h, new_w, ((0, new_h), (0, new_w)), vertical_first)
            matches[(width, vertical_first)] = torch.equal(ours.to(torch.uint8), expected)
    if not matches[(120, False)]:
        return None
    if matches[(40, True)] and not matches[(40, False)]:
        return "vertical first when reduced more"
    return "horizontal first" if matches[(40, False)] else None


def _round_8bit(sums: torch.Tensor) -> torch.Tensor:
    """Pillow's clip8: floor((s + 2^(P−1)) / 2^P) clipped to 0…255, for exact integer sums s."""
    return torch.floor((sums + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


@dataclass(frozen=True)
class DeviceResizeNormalize:
    """The device half when the loaders only decode: :class:`PillowResizeCrop`, then :class:`DeviceNormalize`."""

    resize: PillowResizeCrop
    normalize: DeviceNormalize

    def __call__(self, images: Sequence[torch.Tensor] | torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.normalize(self.resize(images, device), device)


def split_transform(
    transform: Any, resize_on_device: bool = False
) -> tuple[HostPixels, DeviceNormalize | DeviceResizeNormalize] | None:
    """(host half, device half) of ``transform``, or None when it does not end in ToTensor + Normalize.

    With ``resize_on_device``, a transform that is Resize(S, bicubic) + CenterCrop(S) (+ conversion to RGB)
    before ToTensor + Normalize leaves the loaders only the decoding (module docstring)."""
    steps = getattr(transform, "transforms", None)
    if not isinstance(transform, transforms.Compose) or not steps or len(steps) < 2:
        return None
    *host, to_tensor, normalize = steps
    if not isinstance(to_tensor, transforms.ToTensor) or not isinstance(normalize, transforms.Normalize):
        return None
    mean, std = (tuple(float(v) for v in torch.as_tensor(x).flatten()) for x in (normalize.mean, normalize.std))
    device_half = DeviceNormalize(mean, std)
    size = pillow_resize_crop_size(host) if resize_on_device and pillow_pass_order() is not None else None
    if size is not None:
        return HostPixels(()), DeviceResizeNormalize(PillowResizeCrop(size), device_half)
    return HostPixels(tuple(host)), device_half


def pillow_resize_crop_size(steps: Sequence[Any]) -> int | None:
    """S when ``steps`` are Resize(S, bicubic) then CenterCrop(S), optionally followed by a conversion to RGB
    (a no-op on the RGB images the sources give); else None."""
    if len(steps) < 2:
        return None
    resize, crop, *rest = steps
    if not isinstance(resize, transforms.Resize) or not isinstance(crop, transforms.CenterCrop):
        return None
    size = resize.size if isinstance(resize.size, int) else (resize.size[0] if len(resize.size) == 1 else None)
    if size is None or resize.interpolation != InterpolationMode.BICUBIC or resize.max_size is not None:
        return None
    if resize.antialias is False or tuple(crop.size) != (size, size):
        return None
    if not all(_converts_to_rgb(step) for step in rest):
        return None
    return size


def _converts_to_rgb(step: Any) -> bool:
    return (type(step).__name__ == "MaybeConvertMode" and getattr(step, "mode", None) == "RGB") or (
        getattr(step, "__name__", "") == "_convert_to_rgb"
    )
