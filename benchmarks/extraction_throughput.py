"""Extraction throughput: the full pipeline against a bare encoder forward loop.

The pipeline reads JPEG files (photo-like, 500 × 375 by default), decodes, resizes and crops them in loader
processes, normalises them on the device (clipadapt.features.pixels), encodes them and writes the feature
cache from a writer thread. The bare loop only runs ``encode_images`` on tensors that are already in memory,
with the same model, batch size and device. The ratio pipeline / bare shows how much the data path costs
(goal ≥ 0.9). ``--unsplit`` also times the pipeline with the whole transform in the loaders (float32
pixels), the way it ran before.

    python benchmarks/extraction_throughput.py [--images 512] [--batch_size 64] [--model clipadapt-tiny-vit]
    python benchmarks/extraction_throughput.py --device cuda --model ViT-B-32 --images 4096 --batch_size 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

import clipadapt.features.store as store_module
from clipadapt.backbones import load_backbone
from clipadapt.data import open_source
from clipadapt.features import FeatureStore
from clipadapt.progress import set_quiet


def make_jpegs(root: Path, n: int, size: tuple[int, int] = (500, 375), classes: int = 4) -> None:
    """``n`` photo-like JPEGs (smooth gradients, soft blobs, mild noise: what a camera's JPEG holds, rather
    than white noise, which decodes slower than any photo)."""
    rng = np.random.default_rng(0)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width] / max(size)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((height, width, 3))
        for _ in range(6):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.75), rng.uniform(0.05, 0.3)
            pixels += rng.uniform(20, 120, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)[..., None]
        pixels += 60 * xx[..., None] * rng.uniform(0, 1, 3) + rng.normal(0, 6, pixels.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--model", default="clipadapt-tiny-vit")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num_workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="500x375", help="JPEG width x height")
    parser.add_argument("--compare", action="store_true", help="also time the other places the work can be done")
    args = parser.parse_args()
    set_quiet(True)
    backbone = load_backbone(args.model, args.pretrained, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_jpegs(root, args.images, tuple(int(v) for v in args.size.split("x")))
        source = open_source(str(root))
        pixels = torch.stack([backbone.preprocess(source.load(i)) for i in range(args.batch_size)])
        backbone.encode_images(pixels)  # warm-up

        def bare() -> float:
            start = time.perf_counter()
            for _ in range(0, args.images, args.batch_size):
                backbone.encode_images(pixels)
            if backbone.device.type == "cuda":
                torch.cuda.synchronize()
            return args.images / (time.perf_counter() - start)

        def pipeline(run: str, resize_on_device: bool | None = None) -> float:
            store = FeatureStore(Path(tmp) / f"cache-{run}", resize_on_device)  # fresh: everything is extracted
            start = time.perf_counter()
            store.extract(backbone, source, batch_size=args.batch_size, num_workers=args.num_workers)
            return args.images / (time.perf_counter() - start)

        def unsplit(run: str) -> float:
            with mock.patch.object(store_module, "split_transform", lambda *_: None):
                return pipeline(f"unsplit-{run}")

        # Interleave the runs so that drifting machine load affects all alike; report each pair's ratio.
        runs = {"full pipeline": pipeline}
        if args.compare:
            runs |= {
                "resize in loaders": lambda run: pipeline(f"loaders-{run}", False),
                "resize on device": lambda run: pipeline(f"device-{run}", True),
                "unsplit pipeline": unsplit,
            }
        rows = [(bare(), {name: run(f"{r}") for name, run in runs.items()}) for r in range(args.repeats)]
    print(f"model {args.model} ({args.pretrained}) on {backbone.device}, batch {args.batch_size}, {args.images} "
          f"JPEGs of {args.size}")  # fmt: skip
    print(f"bare encoder loop : {max(b for b, _ in rows):8.1f} images/s (best of {args.repeats})")
    for name in runs:
        ratios = sorted(r[name] / b for b, r in rows)
        listed = ", ".join(f"{x:.3f}" for x in ratios)
        print(f"{name:18s}: {max(r[name] for _, r in rows):8.1f} images/s (best); ratio to bare "
              f"{ratios[len(ratios) // 2]:.3f} (median of pairs: {listed})")  # fmt: skip


if __name__ == "__main__":
    main()
