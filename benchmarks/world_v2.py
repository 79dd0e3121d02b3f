"""Every registered method on every target domain of world v2, the papers' ablations of ReCLIP and FAIR, and
the README's tables made from the result JSONs.

    python benchmarks/world_v2.py [--seeds 0 1] [--out clipadapt_out/world_v2] [--skip_existing]
        [--method reclip fair]    # some methods only (the ablations run when reclip or fair is among them)

Per seed S, ``clipadapt demo --domains all --seed S`` (every method at its defaults, the demo's 300 test
images and labelled pool per domain) writes ``OUT/seedS/``; then, on the same images and cached features,
FAIR without the learned alignment score (``las=false``), without the adaptive weight (``weighting=false``)
and with global-view pseudo-labels (``pseudo_view=global``), and ReCLIP without label sharing
(``label_sharing=false``), each into ``OUT/seedS/ablations/``. It prints Markdown: top-1 % (seconds) per
domain and method, ReCLIP's and FAIR's pseudo-label accuracy over the epochs (labels read for this table
only), and the ablations. The full run (seeds 0 and 1) took 54 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clipadapt.demo import run_demo, write_domain_manifest
from clipadapt.io import write_json
from clipadapt.world import TARGET_DOMAINS, WORLD_TEMPLATES

LABEL_FREE = ("zeroshot", "inmap", "reclip-lp", "transclip", "clip-enhance", "reclip", "fair")
FEW_SHOT = ("tip-adapter", "tip-adapter-f", "linear-probe", "cross-modal-linear-probe", "cmm", "transclip-fs")
TEST_IMAGES, POOL = 300, 200  # the demo's defaults
ABLATIONS = {
    "fair": (("las", False), ("weighting", False), ("pseudo_view", "global")),
    "reclip": (("label_sharing", False),),
}


def main_runs(out: Path, seed: int, skip_existing: bool, methods: list[str] | None = None) -> list[dict[str, Any]]:
    folder = out / f"seed{seed}"
    if skip_existing and (folder / "report.md").exists():
        return [json.loads(p.read_text()) for p in sorted((folder / "results").glob("*.json"))]
    return run_demo(folder, domains=["all"], methods=methods, n_test=TEST_IMAGES, n_pool=POOL, seed=seed)


def ablation_runs(out: Path, seed: int, skip_existing: bool, methods: list[str] | None = None) -> list[dict[str, Any]]:
    from clipadapt.backbones import load_backbone
    from clipadapt.data import open_source
    from clipadapt.evaluation import evaluate
    from clipadapt.features import FeatureStore, extract

    folder = out / f"seed{seed}"
    backbone = load_backbone("toyclip", device="cpu")
    store = FeatureStore(folder / "cache")
    records = []
    for domain in TARGET_DOMAINS:
        manifest = write_domain_manifest(folder / "domains", domain, TEST_IMAGES, POOL, seed)  # the demo's, reused
        features = None
        for method, changes in ABLATIONS.items():
            if methods is not None and method not in methods:
                continue
            for key, value in changes:
                path = folder / "ablations" / f"world-{manifest.stem}_{method}_{key}-{value}.json".lower()
                if skip_existing and path.exists():
                    records.append(json.loads(path.read_text()))
                    continue
                if features is None:
                    source = open_source(str(manifest))
                    source.name = f"world-{manifest.stem}"
                    features = extract(backbone, source, list(WORLD_TEMPLATES), store)
                record, _ = evaluate(features, method, seed=seed, hparams={key: value})
                write_json(path, record)
                records.append(record)
    return records


def cell(record: dict[str, Any] | None) -> str:
    if record is None:
        return ""
    seconds = record["seconds"]
    return f"{100 * record['metrics']['acc1']:.1f} ({seconds:.{1 if seconds < 10 else 0}f} s)"


def domain_of(record: dict[str, Any]) -> str:
    return record["dataset"].removeprefix("world-")


def in_domain_order(names: set[str]) -> list[str]:
    """Domain names (with a long-tail suffix where there is one) in the order of ``TARGET_DOMAINS``."""
    return sorted(names, key=lambda name: TARGET_DOMAINS.index(name.split("-")[0]))


def table(records: list[dict[str, Any]], methods: tuple[str, ...]) -> str:
    methods = tuple(m for m in methods if any(r["method"] == m for r in records))  # those that ran
    by = {(domain_of(r), r["method"]): r for r in records}
    domains = in_domain_order({domain_of(r) for r in records})
    lines = ["| domain | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    lines += [f"| {d} | " + " | ".join(cell(by.get((d, m))) for m in methods) + " |" for d in domains]
    means = [sum(by[(d, m)]["metrics"]["acc1"] for d in domains) / len(domains) for m in methods]
    lines.append("| mean | " + " | ".join(f"**{100 * v:.1f}**" for v in means) + " |")
    return "\n".join(lines)


def pseudo_label_table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| domain | method | pseudo-label top-1, first → last epoch (min–max) | final top-1 |",
        "|---|---|---|---|",
    ]
    order = in_domain_order({domain_of(r) for r in records})
    for r in sorted(records, key=lambda r: (order.index(domain_of(r)), r["method"])):
        if r["method"] in ABLATIONS and "pseudo_label_acc1" in r.get("history", {}):
            acc = [100 * a for a in r["history"]["pseudo_label_acc1"]]
            trend = f"{acc[0]:.1f} → {acc[-1]:.1f} ({min(acc):.1f}–{max(acc):.1f})"
            lines.append(f"| {domain_of(r)} | {r['method']} | {trend} | {100 * r['metrics']['acc1']:.1f} |")
    return "\n".join(lines)


def ablation_table(main: list[dict[str, Any]], ablations: list[dict[str, Any]]) -> str:
    ran = {r["method"] for r in ablations}
    columns = [(m, None) for m in ABLATIONS if m in ran]
    columns += [(m, change) for m, changes in ABLATIONS.items() if m in ran for change in changes]
    names = [m if c is None else f"{m} {c[0]}={str(c[1]).lower()}" for m, c in columns]
    by: dict[tuple[str, str], dict[str, Any]] = {
        (domain_of(r), r["method"]): r for r in main if r["method"] in ABLATIONS
    }
    for r in ablations:
        key = next(k for k, v in ABLATIONS[r["method"]] if r["hparams"].get(k) == v)
        by[(domain_of(r), f"{r['method']} {key}={str(r['hparams'][key]).lower()}")] = r
    domains = in_domain_order({domain_of(r) for r in ablations})
    lines = ["| domain | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {d} | " + " | ".join(cell(by.get((d, n))) for n in names) + " |" for d in domains]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", default="clipadapt_out/world_v2")
    parser.add_argument("--skip_existing", action="store_true", help="reuse the result JSONs of an earlier run")
    parser.add_argument("--method", nargs="+", default=None, help="these methods only (default: every one)")
    args = parser.parse_args()
    out = Path(args.out)
    for seed in args.seeds:
        main_records = main_runs(out, seed, args.skip_existing, args.method)
        ablation_records = ablation_runs(out, seed, args.skip_existing, args.method)
        print(f"\n## World seed {seed}\n\nLabel-free\n\n{table(main_records, LABEL_FREE)}\n")
        print(f"Few-shot (4 shots per class)\n\n{table(main_records, FEW_SHOT)}\n")
        print(f"Pseudo-labels over the epochs\n\n{pseudo_label_table(main_records)}\n")
        print(f"Ablations\n\n{ablation_table(main_records, ablation_records)}\n")


if __name__ == "__main__":
    main()
