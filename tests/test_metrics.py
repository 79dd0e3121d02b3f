from __future__ import annotations

import pytest
import torch

from clipadapt.kernels.metrics import classification_metrics, clip_statistics, mean_per_class_recall, topk_accuracy
from clipadapt.methods import build_method
from helpers import make_feature_arrays


def test_metrics_on_a_hand_computed_case() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2, 2, 1])
    assert topk_accuracy(logits, labels, 1) == 0.5  # rows 0 and 2
    assert topk_accuracy(logits, labels, 2) == 0.75  # row 3's label is ranked last
    assert topk_accuracy(logits, labels, 5) == 1.0  # k is capped at the class count
    # class 0: 1/1, class 1: 0/1, class 2: 1/2 → mean 0.5
    assert mean_per_class_recall(logits.argmax(1), labels) == pytest.approx(0.5)
    assert set(classification_metrics(logits, labels)) == {"acc1", "acc5", "mean_per_class_recall"}


def test_clip_statistics_on_a_hand_computed_case() -> None:
    cosines = torch.tensor([[0.30, 0.28, 0.10], [0.20, 0.25, 0.05]])  # row 0 right by 0.02, row 1 wrong by 0.05
    stats = clip_statistics(cosines, torch.tensor([0, 0]))
    confidence = torch.softmax(100 * cosines, dim=1).max(1).values.mean().item()
    assert stats["zero_shot"] == 0.5 and stats["max_probability"] == pytest.approx(confidence)
    assert stats["calibration_gap"] == pytest.approx(confidence - 0.5)
    assert stats["top_cosine"] == pytest.approx(0.275) and stats["top_margin"] == pytest.approx(0.035)


def test_zeroshot_is_cosine_times_100() -> None:
    from clipadapt.features.featureset import FeatureSet

    arrays = make_feature_arrays(n=9, c=3, d=8)
    fs = FeatureSet(torch.from_numpy(arrays["image_features"]), torch.from_numpy(arrays["text_features"]))
    logits = build_method("zeroshot").fit(fs).classifier.logits(fs.image_features)
    x = fs.image_features / fs.image_features.norm(dim=1, keepdim=True)
    t = fs.text_features / fs.text_features.norm(dim=1, keepdim=True)
    assert torch.allclose(logits, 100 * x @ t.T, atol=1e-4)
