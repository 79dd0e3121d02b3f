"""``auto`` (clipadapt's own label-free method) and the generator of CLIP-like development problems."""

from __future__ import annotations

import pytest
import torch

from clipadapt.cli import main
from clipadapt.evaluation import run_method
from clipadapt.methods import build_method
from clipadapt.methods.auto import ABSENT_LOG_PROBABILITY, kept_classes
from clipadapt.synthetic import ProblemSpec, class_counts, clip_statistics, generate_problem


@pytest.mark.parametrize("classes", [19, 100])
def test_generated_problems_have_clips_statistics_at_scale_100(classes: int) -> None:
    """The ranges real CLIP shows on the shared WHU-RS19 files (GUIDE §7; issue 27 item 5), a little wider."""
    stats = clip_statistics(generate_problem(ProblemSpec(classes=classes, images=20 * classes, seed=100)))
    assert 0.65 <= stats["zero_shot"] <= 0.97
    assert 0.55 <= stats["max_probability"] <= 0.95
    assert -0.15 <= stats["calibration_gap"] <= 0.02, "CLIP is slightly under-confident at scale 100"
    assert 0.20 <= stats["top_cosine"] <= 0.36


def test_coverage_and_imbalance_shape_the_label_distribution() -> None:
    spec = ProblemSpec(classes=20, images=1000, coverage=0.25, imbalance=10.0)
    counts = class_counts(spec, torch.Generator().manual_seed(0))
    present = counts[counts > 0]
    assert len(present) == 5 and abs(int(counts.sum()) - 1000) <= 5
    assert 9.0 <= float(present.max() / present.min()) <= 11.0
    again = generate_problem(spec)
    assert torch.equal(again.image_features, generate_problem(spec).image_features), "reproducible from the seed"


def test_kept_classes_are_those_predicted_for_enough_images() -> None:
    logits = torch.tensor([[9.0, 0, 0, 0], [9, 0, 0, 0], [0, 9, 0, 0], [0, 0, 0, 9], [0, 0, 0, 9]])
    assert kept_classes(logits, 2).tolist() == [0, 3]
    assert kept_classes(logits, 1).tolist() == [0, 1, 3]


def test_on_a_whole_set_auto_keeps_every_class_and_is_transclip() -> None:
    features = generate_problem(ProblemSpec(classes=19, images=950, seed=104))
    record = run_method(features, "auto")
    assert record["hparams"]["regime"] == "every class" and record["hparams"]["classes_kept"] == 19
    assert record["hparams"]["solver"] == "transclip over StatA's classes"
    auto = build_method("auto").fit(features.without_labels()).target_logits.argmax(1)
    transclip = build_method("transclip").fit(features.without_labels()).target_logits.argmax(1)
    assert torch.equal(auto, transclip)
    assert record["metrics"]["acc1"] > run_method(features, "zeroshot")["metrics"]["acc1"] + 0.03


@pytest.mark.parametrize("seed", [104, 105])
def test_on_a_few_classes_auto_adapts_over_the_kept_classes_and_stays_above_zero_shot(seed: int) -> None:
    """A set holding 3 of 19 classes (120 images): TransCLIP's mixture pulls images to absent classes; auto
    keeps the classes StatA finds and gives the others no image."""
    features = generate_problem(ProblemSpec(classes=19, images=120, coverage=3 / 19, seed=seed))
    fit = build_method("auto").fit(features.without_labels())
    hparams = fit.classifier.hparams
    assert hparams["solver"] == "transclip over StatA's classes" and hparams["classes_kept"] < 19
    assert hparams["regime"] == f"{hparams['classes_kept']} of 19 classes"
    absent = torch.ones(19, dtype=torch.bool)
    absent[kept_classes(build_method("stata").fit(features.without_labels()).target_logits, 2)] = False
    assert torch.all(fit.target_logits[:, absent] == ABSENT_LOG_PROBABILITY)
    accuracy = run_method(features, "auto")["metrics"]["acc1"]
    assert accuracy >= run_method(features, "zeroshot")["metrics"]["acc1"] - 0.01
    assert accuracy > run_method(features, "transclip")["metrics"]["acc1"]
    assert fit.classifier.logits(features.image_features).shape == (120, 19), "classifies images of any class"


def test_on_a_one_class_set_auto_answers_with_stata() -> None:
    features = generate_problem(ProblemSpec(classes=19, images=64, coverage=1 / 19, seed=109))
    fit = build_method("auto").fit(features.without_labels())
    assert fit.classifier.hparams["solver"] == "stata" and fit.classifier.hparams["regime"] == "1 of 19 classes"
    stata = build_method("stata").fit(features.without_labels())
    assert torch.equal(fit.target_logits.argmax(1), stata.target_logits.argmax(1))


def test_adapt_runs_auto_when_no_method_is_given(tmp_path, capsys) -> None:
    from clipadapt.features import save_feature_file

    path = tmp_path / "generated.npz"
    save_feature_file(generate_problem(ProblemSpec(classes=6, images=180, seed=104)), path)
    assert main(["adapt", "--features", str(path), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out").exists() and "auto" in capsys.readouterr().out
