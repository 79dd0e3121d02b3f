"""Extraction throughput: the full pipeline against a bare encoder forward loop.

The pipeline reads JPEG files, decodes and preprocesses them in loader processes, encodes them and writes
the feature cache. The bare loop only runs ``encode_images`` on tensors that are already in memory, with the
same model, batch size and device. The ratio pipeline / bare shows how much the data path costs (goal ≥ 0.9).

    python benchmarks/extraction_throughput.py [--images 512] [--batch_size 64] [--model clipadapt-tiny-vit]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipadapt.backbones import load_backbone
from clipadapt.data import open_source
from clipadapt.features import FeatureStore
from clipadapt.progress import set_quiet


def make_jpegs(root: Path, n: int, size: int = 256, classes: int = 4) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--model", default="clipadapt-tiny-vit")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num_workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    set_quiet(True)
    backbone = load_backbone(args.model, args.pretrained, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_jpegs(root, args.images)
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

        def pipeline(run: int) -> float:
            store = FeatureStore(Path(tmp) / f"cache{run}")  # a fresh cache: everything is extracted
            start = time.perf_counter()
            store.extract(backbone, source, batch_size=args.batch_size, num_workers=args.num_workers)
            return args.images / (time.perf_counter() - start)

        # Interleave the two so that drifting machine load affects both alike; report each pair's ratio.
        pairs = [(bare(), pipeline(r)) for r in range(args.repeats)]
    ratios = sorted(p / b for b, p in pairs)
    print(f"model {args.model} ({args.pretrained}) on {backbone.device}, batch {args.batch_size}, {args.images} images")
    print(f"bare encoder loop : {max(b for b, _ in pairs):8.1f} images/s (best of {args.repeats})")
    print(f"full pipeline     : {max(p for _, p in pairs):8.1f} images/s (best of {args.repeats})")
    listed = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"ratio             : {ratios[len(ratios) // 2]:8.3f} (median of pairs: {listed})")


if __name__ == "__main__":
    main()
