"""Time and peak memory of the label-free frozen-feature methods on ImageNet-sized generated features.

Each method runs in a fresh process (so its peak resident memory is its own) on N × D features with C
classes clustered around shifted text prototypes, and the script prints seconds, peak memory and top-1.

    python benchmarks/transductive_scale.py [--n 50000 --dim 1024 --classes 1000] [--method inmap reclip-lp]
        [--views 4] [--hparam epochs=2]
    python benchmarks/transductive_scale.py --features ../shared/data/whurs19/*.npz   # real feature files
    python benchmarks/transductive_scale.py --device cuda --n 1000000 --dim 768 --classes 1000   # one GPU

Peak memory is the process's resident memory (and, on CUDA, the device's peak allocation).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def generate(n: int, dim: int, classes: int, seed: int = 0, views: int = 0, balanced: bool = False, noise: float = 2.5):
    import torch
    import torch.nn.functional as F

    from clipadapt.features.featureset import FeatureSet

    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, dim, generator=g), dim=1)
    text = F.normalize(centres + 1.2 * F.normalize(torch.randn(classes, dim, generator=g), dim=1), dim=1)
    labels = torch.arange(n) % classes if balanced else torch.randint(0, classes, (n,), generator=g)
    images = torch.empty(n, dim)
    for start in range(0, n, 65536):  # in chunks: generating must not set the process's peak memory
        chunk = labels[start : start + 65536]
        draw = torch.randn(chunk.shape[0], dim, generator=g)
        images[start : start + 65536] = F.normalize(centres[chunk] + noise * draw / dim**0.5, dim=1)
    features = FeatureSet(images, text, labels)
    if views:  # crops stand-in: each view is its image plus its own noise, stored as float16 like real views
        features.view_features = torch.empty(n, views, dim, dtype=torch.float16)
        for start in range(0, n, 4096):  # in chunks, so that generating does not dominate peak memory
            chunk = images[start : start + 4096, None, :]
            noise = torch.randn(chunk.shape[0], views, dim, generator=g) / dim**0.5
            features.view_features[start : start + 4096] = F.normalize(chunk + noise, dim=-1)
    return features


def run_one(args: argparse.Namespace) -> None:
    """Child process: fit one method and print a JSON line."""
    import torch

    from clipadapt.evaluation.runner import run_method
    from clipadapt.methods import route_hparams

    if args.features:
        from clipadapt.features.featureset import load_feature_file

        features = load_feature_file(args.features[0])
    else:
        features = generate(args.n, args.dim, args.classes, seed=args.seed, views=args.views)
    hparams = route_hparams([args.child], args.hparam)[args.child]
    start = time.perf_counter()
    record = run_method(features, args.child, hparams=hparams, device=args.device, precision=args.precision)
    seconds = time.perf_counter() - start  # includes moving the features to the device
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    device_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    print(json.dumps({"method": args.child, "seconds": seconds, "peak_mb": peak_mb, "device_mb": device_mb,
                      "acc1": record["metrics"]["acc1"], "knn": record["hparams"].get("knn_used", ""),
                      "solver": record["hparams"].get("solver_used", "")}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--views", type=int, default=0, help="view features per image (clip-enhance trains on them)")
    parser.add_argument("--features", nargs="+", default=None, help="feature files to time instead of generated ones")
    parser.add_argument("--method", nargs="+", default=None, help="default: every transductive method")
    parser.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="auto (TF32 on CUDA) or fp32")
    parser.add_argument("--seed", type=int, default=0, help="of the generated features")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args)
        return
    from clipadapt.methods import list_methods, route_hparams

    methods = args.method or [m.name for m in list_methods() if m.setting == "transductive" and not m.needs_encoder]
    routed = route_hparams(methods, args.hparam)  # unknown keys fail here, before any run
    problems = [["--features", path] for path in args.features] if args.features else [[]]
    if not args.features:
        print(f"{args.n} images × {args.dim} dimensions, {args.classes} classes; one process per method")
    print(f"on {args.device}, precision {args.precision}")
    header = f"{'problem':28s} {'method':14s} {'seconds':>8s} {'peak MB':>8s} {'GPU MB':>8s} {'top-1':>6s}"
    print(f"{header}  search / solver  (peak includes the features)")
    for problem in problems:
        name = Path(problem[1]).stem if problem else f"generated {args.n}x{args.dim}"
        for method in ["zeroshot", *methods]:
            cmd = [sys.executable, __file__, "--n", str(args.n), "--dim", str(args.dim), "--classes", str(args.classes)]
            cmd += ["--views", str(args.views), "--seed", str(args.seed), *problem]
            cmd += ["--device", args.device, "--precision", args.precision]
            cmd += ["--child", method, *[f"--hparam={k}={v}" for k, v in routed.get(method, {}).items()]]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            row = json.loads(out)
            print(f"{name:28s} {row['method']:14s} {row['seconds']:8.2f} {row['peak_mb']:8.0f} {row['device_mb']:8.0f} "
                  f"{row['acc1']:6.3f}  {row['knn']} {row['solver']}")  # fmt: skip


if __name__ == "__main__":
    main()
