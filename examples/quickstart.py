"""Quickstart: zero-shot classification of a generated image folder, fully offline.

Generates a folder with one sub-folder per class (coloured shapes), then runs the same code path as

    clipadapt eval --dataset <folder> --model clipadapt-tiny-vit --pretrained random --output <out>.json

The bundled ``clipadapt-tiny-vit`` architecture has *random* weights (no weights can be downloaded here), so
its accuracy is near chance: this exercises the pipeline (folder source, feature cache, prompt ensemble,
zero-shot, result JSON), not CLIP's quality. With a real model, pass e.g. ``--model ViT-B-32 --pretrained openai``.

    python examples/quickstart.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clipadapt.cli import main

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220)}


def make_folder(root: Path, per_class: int = 20, size: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(180, 255, 3)))
            x, y = (int(v) for v in rng.integers(20, size - 20, 2))
            r = int(rng.integers(8, 18))
            ImageDraw.Draw(image).ellipse((x - r, y - r, x + r, y + r), fill=rgb)
            image.save(root / name / f"{i:03d}.jpg")
    return root


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "clipadapt_out/quickstart")
    folder = make_folder(out / "shapes")
    argv = ["eval", "--dataset", str(folder), "--model", "clipadapt-tiny-vit", "--pretrained", "random"]
    argv += [
        "--method",
        "zeroshot",
        "--cache_dir",
        str(out / "cache"),
        "--output",
        str(out / "{dataset}_{method}.json"),
    ]
    sys.exit(main(argv))
