"""World-level numbers of a ToyCLIP on the world's target domains and on candidate designs for them, on
development world seeds (≥ 100): what the world and ToyCLIP are designed by (issue 28's rules: zero-shot,
the oracle linear probe, calibration and cosines only; no adaptation method runs here).

    python benchmarks/world_design.py --model DIR [--seed 100] [--images 1200] [--domains all]

``DIR`` is a folder written by ``python -m clipadapt.toyclip.train --out DIR``. Per domain it prints
zero-shot and oracle-probe top-1, their gap, the calibration gap at CLIP's logit scale 100, the top cosine
and the top margin, as the model card measures them (``clipadapt.toyclip.train.feature_numbers``), every
domain class-balanced.
Candidates (``CANDIDATES``) are shifts that RandAugment does not draw, since a ToyCLIP trained with it
shrugs off global photometric shifts (colour casts, contrast, brightness): a noisy low-resolution sensor,
one pool of light in the dark, an old halftone print.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipadapt.toyclip.model import load
from clipadapt.toyclip.train import embed, feature_numbers, mean_off_diagonal, to_pixels, zero_shot_prototypes
from clipadapt.world import TARGET_DOMAINS, make_domain

render = importlib.import_module("clipadapt.world.render")  # the module (the package exports its function)


def low_resolution_sensor(scene, rng, size: int, sigma: float = 30.0, down: int = 2) -> Image.Image:
    """A green cast at low contrast, the resolution lost (downsampled by ``down``), luma and chroma noise."""
    pixels = 0.35 * np.asarray(render._source(scene, rng, size), dtype=np.float32) + render._rgb((35, 150, 25))
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


CANDIDATES = {
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
