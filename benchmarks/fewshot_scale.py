"""Seconds of each few-shot method on a generated K-shot problem (features only, no encoder).

Generates ``--classes`` classes with enough images per class for K shots, min(K, 4) validation images and
10 test images each, runs the K-shot protocol once per method (seed 1) and prints seconds and top-1.

    python benchmarks/fewshot_scale.py [--classes 1000 --dim 1024 --shots 16] [--method tip-adapter cmm]
        [--hparam iterations=2000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from transductive_scale import generate


def main() -> None:
    from clipadapt.evaluation.runner import run_method
    from clipadapt.methods import list_methods, route_hparams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--noise", type=float, default=4.0, help="image noise (higher: harder problem)")
    parser.add_argument("--method", nargs="+", default=None, help="default: every few-shot method")
    parser.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    methods = args.method or [m.name for m in list_methods() if m.setting == "few-shot"]
    routed = route_hparams(methods, args.hparam)
    per_class = args.shots + min(args.shots, 4) + 10
    features = generate(per_class * args.classes, args.dim, args.classes, balanced=True, noise=args.noise)
    print(f"{args.classes} classes × {args.shots} shots, dimension {args.dim}, seconds of fitting and predicting")
    print(f"{'method':26s} {'seconds':>8s} {'top-1':>6s}")
    for method in ["zeroshot", *methods]:
        record = run_method(features, method, seed=1, hparams=routed.get(method), shots=args.shots)
        print(f"{method:26s} {record['seconds']:8.1f} {record['metrics']['acc1']:6.3f}", flush=True)


if __name__ == "__main__":
    main()
