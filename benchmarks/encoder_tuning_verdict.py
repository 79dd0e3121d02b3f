"""Why ReCLIP and FAIR do or do not gain on the offline world: four arms per method, on development world
seeds (≥ 100), every target domain. Nothing here chooses a default; it tells "too few steps", "too little
data" and "the method does not gain on this world" apart.

    python benchmarks/encoder_tuning_verdict.py --seeds 100 101 102 --domains all --out verdict

Arms (each a fit of the method on the target's images without their labels):
  a         the defaults on a target of 300 images;
  b         the same 300 images with 10× the epochs (nothing else changed);
  c         a 3,000-image target (the 300 of ``a`` among them) at the default epochs, scored on all rows
            (``c``) and on the 300 of ``a`` (``c@300``);
  oracle-a  the true labels in place of the pseudo-labels at a's schedule (the upper bound), and
  oracle-b  at b's;
  official  ReCLIP only: the official code's schedule (``schedule=official``) on a's and c's targets.
Each run records its final top-1, the model's top-1 after every epoch (``epoch_acc1``), the pseudo-labels'
top-1 (``pseudo_label_acc1``; for ReCLIP the first is its epoch-0 label propagation, set beside zero-shot)
and how far the tuned parameters moved (``layernorm_shift``: ‖θ − θ₀‖ / ‖θ₀‖). One JSON line per run goes
to ``OUT/runs.jsonl`` (a rerun skips the runs already there); the tables are printed as Markdown.
On 2 CPU cores one seed and domain costs about 40 minutes (FAIR's 10× and 3,000-image arms most of it).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from clipadapt.backbones import load_backbone
from clipadapt.backbones.base import Backbone
from clipadapt.data import open_source
from clipadapt.demo import write_domain_manifest
from clipadapt.evaluation.runner import history_record
from clipadapt.features import FeatureStore, extract
from clipadapt.features.featureset import FeatureSet
from clipadapt.features.images import Batches, EncoderInputs
from clipadapt.methods.fair import FAIR
from clipadapt.methods.reclip import ReCLIP
from clipadapt.methods.reclip_lp import class_centres
from clipadapt.runtime import seed_everything
from clipadapt.world import TARGET_DOMAINS, WORLD_TEMPLATES

SMALL, LARGE, STRETCH = 300, 3000, 10
METHODS = {"reclip": ReCLIP, "fair": FAIR}


class OracleReCLIP(ReCLIP):
    """ReCLIP trained on the true labels (both sides), its class centres those of the true classes."""

    true_labels: torch.Tensor

    def _pseudo_labels(
        self, encoder: EncoderInputs, batches: Batches, frozen: torch.Tensor, text0: torch.Tensor, propagate: Callable
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        tuned_x, _, _ = super()._pseudo_labels(encoder, batches, frozen, text0, propagate)
        y = self.true_labels.to(tuned_x.device)
        nodes = torch.cat([torch.arange(len(text0), device=y.device), y])
        return tuned_x, class_centres(torch.cat([text0, tuned_x]), nodes, text0), (y, y)


class OracleFAIR(FAIR):
    """FAIR trained on the true labels of each batch's rows (its γ weights as computed)."""

    true_labels: torch.Tensor

    def pseudo_labels(
        self,
        backbone: Backbone,
        weak: torch.Tensor,
        anchors: torch.Tensor,
        generator: torch.Generator,
        rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert rows is not None
        _, gamma = super().pseudo_labels(backbone, weak, anchors, generator, rows)
        return self.true_labels.to(rows.device)[rows], gamma


ORACLES = {"reclip": OracleReCLIP, "fair": OracleFAIR}


def world_target(root: Path, domain: str, seed: int, backbone: Backbone, store: FeatureStore) -> FeatureSet:
    """LARGE test images of ``domain`` (world seed ``seed``, the demo's manifest), extracted with ``backbone``."""
    manifest = write_domain_manifest(root / f"seed{seed}", domain, n_test=LARGE, n_pool=0, seed=seed)
    return extract(backbone, open_source(str(manifest)), list(WORLD_TEMPLATES), store, batch_size=128)


def arms(method: str) -> list[tuple[str, str, dict, bool]]:
    """(arm, target size, hyperparameters, oracle) of one method."""
    stretched = {"epochs": STRETCH * METHODS[method]().epochs}
    plan = [("a", "small", {}, False), ("b", "small", stretched, False), ("c", "large", {}, False),
            ("oracle-a", "small", {}, True), ("oracle-b", "small", stretched, True)]  # fmt: skip
    if method == "reclip":
        plan += [("official", "small", {"schedule": "official"}, False),
                 ("official-c", "large", {"schedule": "official"}, False)]  # fmt: skip
    return plan


def fit_arm(method: str, hparams: dict, oracle: bool, target: FeatureSet, seed: int) -> dict:
    instance = (ORACLES if oracle else METHODS)[method](**hparams)
    if oracle:
        instance.true_labels = target.labels
    seed_everything(seed)
    start = time.perf_counter()
    fit = instance.fit(target.without_labels())
    seconds = time.perf_counter() - start
    predictions = fit.target_logits.argmax(1).cpu()
    return {"predictions": predictions, "seconds": seconds, "history": history_record(fit.history, target)}


def top1(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--domains", nargs="+", default=["all"])
    parser.add_argument("--methods", nargs="+", default=["reclip", "fair"], choices=["reclip", "fair"])
    parser.add_argument("--out", default="clipadapt_out/verdict")
    args = parser.parse_args()
    if any(seed < 100 for seed in args.seeds):
        parser.error("world seeds below 100 are for reporting; the verdict is made on development seeds")
    domains = list(TARGET_DOMAINS) if args.domains == ["all"] else args.domains
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_file = out / "runs.jsonl"
    done = {(r["seed"], r["domain"], r["method"], r["arm"]) for r in map(json.loads, runs_file.open())} if (
        runs_file.exists()) else set()  # fmt: skip
    backbone = load_backbone("toyclip", device="cpu")
    store = FeatureStore(out / "cache")
    for seed in args.seeds:
        for domain in domains:
            large = world_target(out / "images", domain, seed, backbone, store)
            small = large.subset(torch.arange(SMALL))
            x, text = large.normalised()
            zero_shot = (x @ text.T).argmax(1)
            for method in args.methods:
                for arm, size, hparams, oracle in arms(method):
                    if (seed, domain, method, arm) in done:
                        continue
                    target = small if size == "small" else large
                    result = fit_arm(method, hparams, oracle, target, seed)
                    row = {"seed": seed, "domain": domain, "method": method, "arm": arm, "images": len(target),
                           "hparams": hparams, "seconds": round(result["seconds"], 1),
                           "top1": top1(result["predictions"], target.labels),
                           "zero_shot": top1(zero_shot[: len(target)], target.labels),
                           "history": result["history"]}  # fmt: skip
                    if size == "large":
                        row["top1_on_small"] = top1(result["predictions"][:SMALL], small.labels)
                        row["zero_shot_on_small"] = top1(zero_shot[:SMALL], small.labels)
                    with runs_file.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(f"{seed} {domain:9s} {method:6s} {arm:10s} top-1 {100 * row['top1']:5.1f} (zero-shot "
                          f"{100 * row['zero_shot']:5.1f}) in {row['seconds']:.0f} s", flush=True)  # fmt: skip
    print_tables([json.loads(line) for line in runs_file.open()])


def print_tables(rows: list[dict]) -> None:
    """Per method: mean over seeds of each arm's final top-1 (and, for c, on the 300), per domain."""
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        names = [a for a, *_ in arms(method)]
        columns = ["zero-shot"] + [n for a in names for n in ([a, "c@300"] if a == "c" else [a])]
        print(f"\n{method}: top-1 % (mean over seeds {sorted({r['seed'] for r in mine})})\n")
        print("| domain | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for domain in sorted({r["domain"] for r in mine}):
            cells = []
            for column in columns:
                if column == "zero-shot":
                    values = [r["zero_shot"] for r in mine if r["domain"] == domain and r["arm"] == "a"]
                elif column == "c@300":
                    values = [r["top1_on_small"] for r in mine if r["domain"] == domain and r["arm"] == "c"]
                else:
                    values = [r["top1"] for r in mine if r["domain"] == domain and r["arm"] == column]
                cells.append(f"{100 * sum(values) / len(values):.1f}" if values else "")
            print(f"| {domain} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
