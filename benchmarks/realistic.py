"""Every label-free method on realistic target sets (StatA's scenarios), with the change over zero-shot.

Scenarios (GUIDE §6, ``shared/papers/official-code-facts.md`` §9): episodes of B = 64 images from 1–4,
2–10 and 5–25 classes; of B = 1000 from 5–25, 25–50 and 50–100 classes (class ranges capped at the
file's classes; a scenario whose range starts above them is left out); a long-tailed subsample (ρ = 10);
the whole set. Episodes are drawn from the labels as StatA's sampler does; the methods never see labels.

    python benchmarks/realistic.py --features ../shared/data/whurs19/*.npz          # real features (report)
    python benchmarks/realistic.py --generated 100 101 --classes 19 100             # development problems
    python benchmarks/realistic.py --generated 100 --method zeroshot stata auto --episodes 20 --json out.json

Prints one table per scenario, each method's mean top-1 % over the files (Δ against zero-shot), and the
lowest per-file Δ (the worst a user of that scenario would have seen).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

SCENARIOS = [  # (name, protocol keyword arguments)
    ("B=64, 1-4 classes", {"episodes": True, "size": 64, "classes": (1, 4)}),
    ("B=64, 2-10 classes", {"episodes": True, "size": 64, "classes": (2, 10)}),
    ("B=64, 5-25 classes", {"episodes": True, "size": 64, "classes": (5, 25)}),
    ("B=1000, 5-25 classes", {"episodes": True, "size": 1000, "classes": (5, 25)}),
    ("B=1000, 25-50 classes", {"episodes": True, "size": 1000, "classes": (25, 50)}),
    ("B=1000, 50-100 classes", {"episodes": True, "size": 1000, "classes": (50, 100)}),
    ("long-tailed, rho=10", {"imbalance": 10.0}),
    ("whole set", {}),
]
DEFAULT_METHODS = ["zeroshot", "inmap", "transclip", "stata", "reclip-lp", "auto"]


def protocols(num_classes: int, episodes: int):
    """(name, Protocol) of every scenario that the classes allow, class ranges capped at ``num_classes``."""
    from clipadapt.evaluation.episodes import Protocol

    for name, kw in SCENARIOS:
        if "classes" in kw:
            low, high = kw["classes"]
            if low > num_classes:
                continue
            yield name, Protocol(episodes, kw["size"], (low, min(high, num_classes)))
        else:
            yield name, Protocol(0, imbalance=kw.get("imbalance"))


def problems(args: argparse.Namespace):
    """(name, FeatureSet) of the feature files or the generated development problems."""
    if args.features:
        from clipadapt.features import load_feature_file

        for path in args.features:
            yield Path(path).stem, load_feature_file(path)
    for seed in args.generated or []:
        from clipadapt.synthetic import ProblemSpec, generate_problem

        for classes in args.classes:
            spec = ProblemSpec(classes=classes, images=args.per_class * classes, seed=seed)
            yield f"generated-seed{seed}-C{classes}", generate_problem(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", nargs="*", default=[], help="labelled feature files")
    parser.add_argument("--generated", nargs="*", type=int, default=None,
                        help="development problems of these seeds (clipadapt.synthetic; use seeds ≥ 100)")  # fmt: skip
    parser.add_argument("--classes", nargs="+", type=int, default=[19, 100], help="classes of generated problems")
    parser.add_argument("--per_class", type=int, default=50, help="images per class of generated problems")
    parser.add_argument("--method", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--episodes", type=int, default=10, help="episodes per scenario and file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode draws")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write every number here")
    args = parser.parse_args()
    logging.getLogger("clipadapt").setLevel(logging.ERROR)  # the assumption warnings are the point here

    from clipadapt.evaluation.runner import evaluate_protocol
    from clipadapt.methods import get_method

    for m in args.method:
        get_method(m)
    results: dict[str, dict[str, dict[str, float]]] = {}  # scenario → problem → method → top-1
    start = time.perf_counter()
    for problem, features in problems(args):
        for scenario, protocol in protocols(features.num_classes, args.episodes):
            for method in args.method:
                record, _ = evaluate_protocol(features, method, protocol, seed=args.seed, device=args.device)
                results.setdefault(scenario, {}).setdefault(problem, {})[method] = 100 * record["metrics"]["acc1"]
    elapsed = time.perf_counter() - start
    for scenario, by_problem in results.items():
        print(f"\n{scenario} ({len(by_problem)} file(s), {args.episodes} episodes each where episodic)")
        print("| method | mean top-1 % | Δ vs zero-shot | lowest Δ over the files |")
        print("|---|---|---|---|")
        for method in args.method:
            accs = [r[method] for r in by_problem.values()]
            deltas = [r[method] - r["zeroshot"] for r in by_problem.values()] if "zeroshot" in args.method else [0]
            mean = sum(accs) / len(accs)
            print(f"| {method} | {mean:.2f} | {sum(deltas) / len(deltas):+.2f} | {min(deltas):+.2f} |")
    print(f"\n{elapsed:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
