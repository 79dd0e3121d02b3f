"""The run grid: every (method, shots, seed) run on a feature set, where each writes its result JSON, and
which an earlier invocation already finished (what ``clipadapt eval`` and ``clipadapt demo`` plan with).

    grid = RunGrid(["zeroshot", "transclip"], seeds=[0], output="results/{dataset}_{method}.json")
    for run in grid.plan(dataset, model, pretrained):
        record, prediction = run_one(features, run)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipadapt.errors import ClipAdaptError
from clipadapt.evaluation.episodes import Protocol
from clipadapt.evaluation.runner import Prediction, evaluate, evaluate_protocol
from clipadapt.features.featureset import FeatureSet
from clipadapt.io import write_json
from clipadapt.methods import get_method
from clipadapt.paths import output_path

log = logging.getLogger("clipadapt")


@dataclass(frozen=True)
class Run:
    """One planned run: a method with its seed and shots (None: label-free), and where its result goes."""

    method: str
    seed: int
    shots: int | None
    output: Path | None


@dataclass
class RunGrid:
    """Every method × shots × seed, planned per feature set; output paths come from the ``output`` template
    (:func:`clipadapt.paths.output_path`) and must not collide across the whole grid.

    ``shots``: the shot counts each method runs with (``(None,)``: none); with ``few_shot_only`` only few-shot
    methods get them and the others run once without. An existing output is an error unless
    ``skip_existing`` (the run is left out when ``finished(path)`` says it can be) or ``overwrite``.
    """

    methods: Sequence[str]
    seeds: Sequence[int] = (0,)
    shots: Sequence[int | None] = (None,)
    output: str | None = None
    skip_existing: bool = False
    overwrite: bool = False
    few_shot_only: bool = False
    taken: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name in self.methods:
            get_method(name)  # unknown names fail before any work

    def plan(
        self, dataset: str, model: str, pretrained: str | None, finished: Callable[[Path], bool] | None = None
    ) -> list[Run]:
        runs = []
        for name in self.methods:
            cls = get_method(name)
            shot_counts = self.shots if cls.setting == "few-shot" or not self.few_shot_only else (None,)
            for shots in shot_counts:
                for seed in self.seeds:
                    plan = {"dataset": dataset, "model": model, "pretrained": pretrained, "method": name,
                            "setting": cls.setting, "seed": seed, "shots": shots}  # fmt: skip
                    out = self._output(plan, finished)
                    if out is not False:
                        runs.append(Run(name, seed, shots, out))
        return runs

    def _output(self, plan: dict[str, Any], finished: Callable[[Path], bool] | None) -> Path | bool | None:
        """The run's output path (None: not written), or False when it is finished and skipped."""
        if self.output is None:
            return None
        out = output_path(self.output, plan)
        if out in self.taken:
            raise ClipAdaptError(f"several runs would write {str(out)!r}; add placeholders to --output")
        self.taken.add(out)
        if out.exists() and self.skip_existing:
            if finished is None or finished(out):
                log.info("skipping %s: %s exists", plan["method"], out)
                return False
        elif out.exists() and not self.overwrite:
            raise ClipAdaptError(f"{str(out)!r} exists; pass --overwrite to replace it or --skip_existing to keep it")
        return out


def run_one(
    features: FeatureSet,
    run: Run,
    hparams: dict[str, Any] | None = None,
    protocol: Protocol | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> tuple[dict[str, Any], Prediction | None]:
    """Run one planned run (on the target sets of ``protocol`` when given and not the whole set) and write its
    record to ``run.output``."""
    if protocol is None or protocol.whole:
        record, prediction = evaluate(features, run.method, run.seed, hparams, run.shots, device, precision)
    else:
        record, prediction = evaluate_protocol(features, run.method, protocol, run.seed, hparams, device, precision)
    if run.output is not None:
        write_json(run.output, record)
    return record, prediction
