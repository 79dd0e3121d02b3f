"""The statistics of generated CLIP-like problems (``clipadapt.synthetic``) beside those of real feature files.

    python benchmarks/synthetic_problems.py --seeds 100 101 102 103 --classes 19 100
    python benchmarks/synthetic_problems.py --features ../shared/data/whurs19/*.npz   # real CLIP, to compare

Prints, per problem: zero-shot top-1, the mean max softmax probability at logit scale 100, their difference
(the calibration gap; CLIP is slightly under-confident) and the mean cosine of an image to its nearest
class prototype. These are properties of the features and of zero-shot only, no adaptation method runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[100, 101, 102, 103])
    parser.add_argument("--classes", nargs="+", type=int, default=[19, 100])
    parser.add_argument("--per_class", type=int, default=50)
    parser.add_argument("--features", nargs="*", default=[], help="real feature files to compare with")
    args = parser.parse_args()

    from clipadapt.features import load_feature_file
    from clipadapt.synthetic import ProblemSpec, clip_statistics, generate_problem

    problems = [(Path(p).stem, lambda p=p: load_feature_file(p)) for p in args.features]
    for seed in args.seeds:
        for c in args.classes:
            spec = ProblemSpec(classes=c, images=args.per_class * c, seed=seed)
            problems.append((f"generated seed {seed}, {c} classes", lambda spec=spec: generate_problem(spec)))
    print("| problem | zero-shot top-1 | mean max probability | calibration gap | top cosine |")
    print("|---|---|---|---|---|")
    for name, make in problems:
        s = clip_statistics(make())
        print(f"| {name} | {s['zero_shot']:.3f} | {s['max_probability']:.3f} | {s['calibration_gap']:+.3f} | "
              f"{s['top_cosine']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
