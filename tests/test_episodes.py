"""Realistic target sets (StatA's episodes, long tails), label-free diagnostics and the assumption warnings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from clipadapt.cli import main
from clipadapt.errors import ClipAdaptError
from clipadapt.evaluation.diagnostics import effective_classes
from clipadapt.evaluation.episodes import Protocol, draw_episode, long_tailed_rows, parse_classes, target_sets
from clipadapt.evaluation.runner import evaluate_protocol
from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.base import Classifier, Fit, Method
from helpers import as_featureset, make_modality_gap


def test_episodes_hold_the_classes_and_sizes_asked_for() -> None:
    labels = np.repeat(np.arange(10), 30)
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(300):
        rows = draw_episode(labels, 64, (2, 4), rng)
        present = np.unique(labels[rows])
        assert 2 <= len(present) <= 4 and len(rows) == min(64, 30 * len(present))
        assert len(set(rows.tolist())) == len(rows), "without replacement"
        counts.append(len(present))
    assert set(counts) == {2, 3, 4}, "K drawn from K1..K2"
    assert len(draw_episode(labels, 1000, (20, 30), rng)) == 300, "K above the classes present: every class"
    assert len(np.unique(labels[draw_episode(labels, 64, None, rng)])) == 10


def test_long_tailed_subsample_falls_geometrically_from_the_smallest_class() -> None:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate([50, 60, 55, 52, 58])])
    rows = long_tailed_rows(labels, 10.0, np.random.default_rng(0))
    sizes = sorted(np.bincount(labels[rows]).tolist(), reverse=True)
    assert sizes == [50, round(50 * 10**-0.25), round(50 * 10**-0.5), round(50 * 10**-0.75), 5]


def test_target_sets_are_reproducible_from_the_seed_and_protocols_check_their_input() -> None:
    labels = np.repeat(np.arange(6), 20)
    protocol = Protocol(episodes=4, size=16, classes=(1, 3), imbalance=4.0)
    first, again = target_sets(labels, protocol, 7), target_sets(labels, protocol, 7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True)) and len(first) == 4
    assert parse_classes("1-4") == (1, 4) and parse_classes("5") == (5, 5)
    with pytest.raises(ClipAdaptError, match="K1-K2"):
        parse_classes("four")
    with pytest.raises(ClipAdaptError, match="1 ≤ K1 ≤ K2"):
        Protocol(episodes=2, classes=(4, 1))


@dataclass
class LabelSpy(Method):
    """A label-free method that records what it was given."""

    name = "label-spy"
    setting = "transductive"
    seen: list = None  # type: ignore[assignment]

    def fit(self, target: FeatureSet, support=None, validation=None) -> Fit:
        self.seen.append((target.labels, len(target)))
        x, text = target.normalised()
        return Fit(Classifier(text, target.class_names, 100.0), target_logits=100 * x @ text.T)


def test_episodes_reach_the_method_without_labels_and_the_record_keeps_each_one() -> None:
    features = as_featureset(make_modality_gap(n=240, c=6))
    spy = LabelSpy(seen=[])
    record, prediction = evaluate_protocol(features, spy, Protocol(episodes=5, size=32, classes=(1, 2)), seed=3)
    assert prediction is None and len(spy.seen) == 5
    assert all(labels is None and n == 32 for labels, n in spy.seen), "labels are read only to draw the episodes"
    assert record["protocol"] == {"episodes": 5, "episode_size": 32, "episode_classes": [1, 2], "imbalance": None}
    assert len(record["episodes"]) == 5 and all(1 <= e["classes_present"] <= 2 for e in record["episodes"])
    assert record["metrics"]["acc1"] == pytest.approx(np.mean([e["acc1"] for e in record["episodes"]]), abs=1e-6)
    assert record["diagnostics"]["images"] == 32


def test_effective_classes_count_the_classes_predictions_fall_on() -> None:
    assert effective_classes(torch.tensor([0, 1, 2, 3] * 5), 10) == pytest.approx(4.0)
    assert effective_classes(torch.zeros(20, dtype=torch.long), 10) == pytest.approx(1.0)


def test_methods_that_assume_every_class_is_present_warn_once_and_stata_does_not(caplog) -> None:
    features = as_featureset(make_modality_gap(n=600, c=6))
    protocol = Protocol(episodes=3, size=64, classes=(1, 1))
    with caplog.at_level("WARNING", logger="clipadapt"):
        for method in ("inmap", "transclip", "stata", "zeroshot"):
            evaluate_protocol(features, method, protocol, seed=0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("InMaP spreads its pseudo-labels evenly") and "(in " in messages[0]
    assert messages[1].startswith("TransCLIP gives every class") and "--method auto or stata" in messages[1]


def test_eval_runs_episodes_from_the_command_line_and_build_shows_the_protocol(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gap.npz"
    np.savez(path, **make_modality_gap(n=300))
    out = tmp_path / "r" / "{method}.json"
    argv = ["eval", "--features", str(path), "--method", "zeroshot", "stata", "--episodes", "4", "--episode_size",
            "32", "--episode_classes", "1-2", "--output", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((tmp_path / "r" / "stata.json").read_text())
    assert len(record["episodes"]) == 4 and record["diagnostics"]["images"] == 32
    capsys.readouterr()
    assert main(["build", "--pivot", *map(str, sorted((tmp_path / "r").glob("*.json")))]) == 0
    assert "· 32 images, 1–2 classes (×4)" in capsys.readouterr().out
    assert main([*argv[:-3], "--shots", "2"]) == 2
    assert "do not go with --shots" in capsys.readouterr().err
