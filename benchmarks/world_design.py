"""World-level numbers of a ToyCLIP on the world's target domains and on candidate designs for them, on
development world seeds (≥ 100): what the world and ToyCLIP are designed by (issue 28's rules: zero-shot,
the oracle linear probe, calibration and cosines only; no adaptation method runs here).

    python benchmarks/world_design.py --model DIR [--seed 100] [--images 1200] [--domains all]

``DIR`` is a folder written by ``python -m clipadapt.toyclip.train --out DIR``. Per domain it prints
zero-shot and oracle-probe top-1, their gap, the calibration gap at CLIP's logit scale 100, the top cosine
and the top margin, as the model card measures them (``clipadapt.toyclip.train.feature_numbers``), every
domain class-balanced.
Candidates (``CANDIDATES``) are shifts that RandAugment does not draw, since a ToyCLIP trained with it
shrugs off global photometric shifts (colour casts, contrast, brightness): a noisy low-resolution sensor, a
sensor with stuck pixels or colour blotches, strong JPEG compression, one pool of light in the dark, light
through venetian blinds, a railing in front of the scene, a wet window, an old halftone print.
"""

from __future__ import annotations

import argparse
import importlib
import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from clipadapt.toyclip.model import load
from clipadapt.toyclip.train import embed, feature_numbers, mean_off_diagonal, to_pixels, zero_shot_prototypes
from clipadapt.world import TARGET_DOMAINS, make_domain

render = importlib.import_module("clipadapt.world.render")  # the module (the package exports its function)


def green_cast(pixels: np.ndarray) -> np.ndarray:
    """The ``noisy`` domain's strong green cast at low contrast, on (H, W, 3) float pixels."""
    return 0.35 * pixels + render._rgb((35, 150, 25))


def low_resolution_sensor(scene, rng, size: int, sigma: float = 30.0, down: int = 2) -> Image.Image:
    """A green cast at low contrast, the resolution lost (downsampled by ``down``), luma and chroma noise."""
    pixels = green_cast(np.asarray(render._source(scene, rng, size), dtype=np.float32))
    small = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize((size // down,) * 2)
    pixels = np.asarray(small.resize((size, size), Image.Resampling.NEAREST), dtype=np.float32)
    noise = rng.normal(0, sigma, (size, size, 1)) + rng.normal(0, sigma / 2, (size, size, 3))
    return render.to_image(pixels + noise, size)


def pool_of_light(scene, rng, size: int, dark: float = 0.32) -> Image.Image:
    """Dark and blue, lit by one off-centre pool of light, so part of the object is in deep shadow."""
    pixels = np.asarray(render._source(scene, rng, size), dtype=np.float32)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    cx, cy = 0.5 + rng.uniform(-0.35, 0.35, 2)
    radius = rng.uniform(0.25, 0.4)
    light = 0.12 + 0.9 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))[..., None]
    lit = 2 * dark * pixels * light * render._rgb((0.75, 0.85, 1.3))
    return render.to_image(lit + render._rgb((5, 12, 45)) + rng.normal(0, 6, pixels.shape), size)


def halftone_print(scene, rng, size: int, cell: float = 4.0, wash: float = 0.6) -> Image.Image:
    """An old print: half desaturated, printed as a halftone screen of dots (pitch ``cell`` px, at 45°
    ±5°) whose area follows the ink each channel needs, on yellowed paper."""
    side = 2 * size
    pixels = np.asarray(render._source(scene, rng, side), dtype=np.float32)
    pixels = 0.5 * pixels + 0.5 * pixels.mean(axis=2, keepdims=True)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    theta = math.radians(45 + rng.uniform(-5, 5))
    u = (x * math.cos(theta) + y * math.sin(theta)) / (2 * cell)
    v = (-x * math.sin(theta) + y * math.cos(theta)) / (2 * cell)
    distance = np.hypot(u - np.round(u), v - np.round(v))[..., None]  # to the nearest dot centre, in cells
    printed = (distance < np.sqrt((1 - pixels / 255) / math.pi)).astype(np.float32)  # dot area = ink
    paper = render._rgb((238, 228, 205)) + rng.normal(0, 4, (side, side, 1))
    return render.to_image(paper * (1 - wash * printed) + render._rgb((10, 3, -10)), size)


def impulse_sensor(scene, rng, size: int, share: float = 0.08, cast: bool = True) -> Image.Image:
    """A failing sensor: (with ``cast``) the green cast at low contrast of ``noisy``, then a ``share`` of
    the pixels stuck (dead or hot, per channel or white) and a little Gaussian noise."""
    pixels = np.asarray(render._source(scene, rng, size), dtype=np.float32)
    if cast:
        pixels = green_cast(pixels)
    stuck = rng.random((size, size, 1)) < share
    value = np.where(rng.random((size, size, 1)) < 0.5, 0.0, 255.0) * np.ones(3)
    value = np.where(rng.random((size, size, 1)) < 0.5, value, rng.integers(0, 2, (size, size, 3)) * 255.0)
    pixels = np.where(stuck, value, pixels) + rng.normal(0, 6, pixels.shape)
    return render.to_image(pixels, size)


def chroma_blotches(scene, rng, size: int, sigma: float = 45.0) -> Image.Image:
    """A small sensor at high gain: the green cast at low contrast of ``noisy``, with colour noise in blotches
    of about 2 px (noise at half resolution, upsampled) and fine luma noise."""
    pixels = green_cast(np.asarray(render._source(scene, rng, size), dtype=np.float32))
    half = rng.normal(0, sigma, (size // 2, size // 2, 3)).astype(np.float32)
    blotches = np.stack([np.asarray(Image.fromarray(half[..., c]).resize((size, size), Image.Resampling.BILINEAR))
                         for c in range(3)], axis=-1)  # fmt: skip
    return render.to_image(pixels + blotches + rng.normal(0, 8, (size, size, 1)), size)


def behind_railing(scene, rng, size: int, period: float = 0.22, width: float = 0.06) -> Image.Image:
    """Seen through a railing: vertical dark metal bars (``width`` of the side, every ``period`` of it,
    ±15 %) in front of the scene, lit from the left."""
    side = 2 * size
    pixels = np.asarray(render._source(scene, rng, side), dtype=np.float32)
    x = np.arange(side, dtype=np.float32) + 0.5
    step = period * side * rng.uniform(0.85, 1.15)
    offset = (x / step + rng.uniform()) % 1.0
    bar = (offset < width / period)[None, :, None].astype(np.float32)
    shade = 1.0 - 0.6 * (offset / (width / period)).clip(0, 1)[None, :, None]  # lit edge to shadowed edge
    metal = render._rgb(rng.integers(40, 90, 3)) * (0.6 + 0.8 * shade)
    return render.to_image(pixels * (1 - bar) + metal * bar, size)


def through_blinds(scene, rng, size: int, period: float = 0.3, dark: float = 0.3, shadow: float = 0.15) -> Image.Image:
    """Night, the only light a street lamp through venetian blinds: soft horizontal bands of light
    (period ``period`` of the side ±15 %, tilted ±8°; ``shadow`` of the light between them) over a dark
    blue scene."""
    pixels = np.asarray(render._source(scene, rng, size), dtype=np.float32)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    tilt = math.radians(rng.uniform(-8, 8))
    wave = (y * math.cos(tilt) + x * math.sin(tilt)) / (period * rng.uniform(0.85, 1.15)) + rng.uniform()
    light = shadow + (1 - shadow) * (np.cos(2 * math.pi * wave) > 0).astype(np.float32)
    light = np.asarray(Image.fromarray((255 * light).astype(np.uint8)).filter(ImageFilter.GaussianBlur(size * 0.015)),
                       dtype=np.float32)[..., None] / 255  # fmt: skip
    lit = 2 * dark * pixels * light * render._rgb((1.0, 0.9, 0.7))
    return render.to_image(lit + render._rgb((5, 10, 40)) + rng.normal(0, 4, pixels.shape), size)


def cheap_jpeg(scene, rng, size: int, quality: int = 12) -> Image.Image:
    """A cheap camera: a green cast at low contrast, a little noise, then strong JPEG compression (8 × 8
    blocks, chroma at half resolution)."""
    pixels = 0.5 * np.asarray(render._source(scene, rng, size), dtype=np.float32) + render._rgb((30, 110, 20))
    image = render.to_image(pixels + rng.normal(0, 6, pixels.shape), size)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality + rng.integers(-3, 4)), subsampling=2)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def wet_window(scene, rng, size: int, drops: int = 60) -> Image.Image:
    """Seen through a wet window: ``drops`` ±30 % raindrops of 1.5–4 % of the side, each a blurred bright
    disc with a dark rim, the scene behind slightly blurred."""
    side = 2 * size
    image = Image.fromarray(np.clip(render._source_pixels(scene, rng, side), 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(side * 0.006))
    layer = Image.new("L", (side, side), 0)
    rim = Image.new("L", (side, side), 0)
    draw, draw_rim = ImageDraw.Draw(layer), ImageDraw.Draw(rim)
    for _ in range(int(drops * rng.uniform(0.7, 1.3))):
        x, y = rng.uniform(0, 1, 2) * side
        r = rng.uniform(0.015, 0.04) * side
        draw_rim.ellipse((x - r, y - r, x + r, y + r), fill=255)
        draw.ellipse((x - 0.7 * r, y - 0.8 * r, x + 0.6 * r, y + 0.5 * r), fill=255)
    light = np.asarray(layer.filter(ImageFilter.GaussianBlur(side * 0.006)), dtype=np.float32)[..., None] / 255
    edge = np.asarray(rim.filter(ImageFilter.GaussianBlur(side * 0.004)), dtype=np.float32)[..., None] / 255
    scene_pixels = np.asarray(image, dtype=np.float32)
    pixels = scene_pixels * (1 - 0.45 * edge) + 0.55 * light * (255 - scene_pixels)
    return render.to_image(pixels, size)


CANDIDATES = {
    "railing": lambda scene, rng, size: behind_railing(scene, rng, size),
    "railing-wide": lambda scene, rng, size: behind_railing(scene, rng, size, 0.25, 0.09),
    "blinds": lambda scene, rng, size: through_blinds(scene, rng, size),
    "blinds-fine": lambda scene, rng, size: through_blinds(scene, rng, size, 0.2),
    "railing-thin": lambda scene, rng, size: behind_railing(scene, rng, size, 0.25, 0.035),
    "blinds-soft": lambda scene, rng, size: through_blinds(scene, rng, size, 0.3, 0.35, 0.45),
    "impulse-8": lambda scene, rng, size: impulse_sensor(scene, rng, size, 0.08),
    "impulse-15": lambda scene, rng, size: impulse_sensor(scene, rng, size, 0.15),
    "blotches-45": lambda scene, rng, size: chroma_blotches(scene, rng, size, 45.0),
    "jpeg-12": lambda scene, rng, size: cheap_jpeg(scene, rng, size, 12),
    "jpeg-6": lambda scene, rng, size: cheap_jpeg(scene, rng, size, 6),
    "wet-window": lambda scene, rng, size: wet_window(scene, rng, size),
    "wet-window-heavy": lambda scene, rng, size: wet_window(scene, rng, size, 110),
    "sensor-s30-d2": lambda scene, rng, size: low_resolution_sensor(scene, rng, size, 30, 2),
    "sensor-s45-d2": lambda scene, rng, size: low_resolution_sensor(scene, rng, size, 45, 2),
    "sensor-s30-d3": lambda scene, rng, size: low_resolution_sensor(scene, rng, size, 30, 3),
    "light-pool": lambda scene, rng, size: pool_of_light(scene, rng, size),
    "light-pool-dim": lambda scene, rng, size: pool_of_light(scene, rng, size, 0.22),
    "halftone-4": lambda scene, rng, size: halftone_print(scene, rng, size, 4.0),
    "halftone-3": lambda scene, rng, size: halftone_print(scene, rng, size, 3.0),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a ToyCLIP folder (toyclip.safetensors + config.json)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--images", type=int, default=1200, help="images per domain")
    parser.add_argument("--domains", nargs="+", default=["all"], help="'all', or target and candidate names")
    args = parser.parse_args()
    if args.seed < 100:
        sys.exit("world seeds below 100 are for reporting; design on seeds >= 100")
    render.DOMAINS.update(CANDIDATES)  # after the world's own, so their seeds' streams do not move
    model = load(Path(args.model))
    prototypes = zero_shot_prototypes(model)
    print(f"prototype cosine {mean_off_diagonal(prototypes @ prototypes.T):.3f} (real CLIP on WHU-RS19: 0.78-0.86)")
    print("| domain | zero-shot | probe | gap | calibration gap | top cosine | top margin |")
    print("|---|---|---|---|---|---|---|")
    names = [*TARGET_DOMAINS, *CANDIDATES] if args.domains == ["all"] else args.domains
    for domain in names:
        sample = make_domain(domain, args.images, seed=args.seed, size=model.config.image_size, imbalance=1)
        features = embed(model, to_pixels(sample.images, model.config))
        row = feature_numbers(features, torch.from_numpy(sample.labels), prototypes)
        top1, probe = row["zero_shot"], row["linear_probe"]
        cells = [f"{100 * top1:.1f}", f"{100 * probe:.1f}", f"{100 * (probe - top1):+.1f}"]
        cells += [f"{row['calibration_gap']:+.3f}", f"{row['top_cosine']:.3f}", f"{row['top_margin']:.3f}"]
        print(f"| {domain} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
