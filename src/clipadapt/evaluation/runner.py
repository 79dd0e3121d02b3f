"""Run one method on one FeatureSet and report it as a result record (the result-JSON contract)."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import torch

from clipadapt.errors import MethodUnavailable
from clipadapt.evaluation.fewshot import few_shot_sets, test_rows
from clipadapt.evaluation.metrics import classification_metrics
from clipadapt.features.featureset import FeatureSet
from clipadapt.methods import Classifier, Method, build_method
from clipadapt.runtime import seed_everything


def test_subset(features: FeatureSet) -> FeatureSet:
    """The rows to score: the ``test`` split when the features have splits, else all of them."""
    return features if features.split is None else features.subset(test_rows(features.split, features.dataset))


class Prediction(NamedTuple):
    logits: torch.Tensor  # (N, C) for the test rows
    test: FeatureSet  # the test rows
    seconds: float
    classifier: Classifier


def fit_and_predict(features: FeatureSet, method: Method, seed: int = 0, shots: int | None = None) -> Prediction:
    """Fit ``method`` and return the test logits, the test rows, the seconds taken and the classifier.

    The method sees the test features *without labels*; labels are read only to score, by the caller. With
    ``shots`` = K, the K-shot protocol of :mod:`clipadapt.evaluation.fewshot` (seeded by ``seed``) picks the
    labelled support and validation rows and the test rows; every method, few-shot or not, is then scored
    on those same test rows, so that the numbers compare.
    """
    if method.setting == "inductive":
        raise MethodUnavailable(f"method {method.name!r} ({method.setting}) is not supported by this runner yet")
    if method.setting == "few-shot" and shots is None:
        raise MethodUnavailable(f"method {method.name!r} is few-shot: give --shots K")
    support = validation = None
    if shots is None:
        test = test_subset(features)
    else:
        support, validation, test = few_shot_sets(features, shots, seed)
        if method.setting != "few-shot":
            support = validation = None  # label-free methods never see a label
    seed_everything(seed)
    start = time.perf_counter()
    fit = method.fit(test.without_labels(), support, validation)
    logits = fit.target_logits if fit.target_logits is not None else fit.classifier.logits(test.image_features)
    return Prediction(logits, test, time.perf_counter() - start, fit.classifier)


def run_method(
    features: FeatureSet,
    method: str | Method,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    shots: int | None = None,
) -> dict[str, Any]:
    """Fit ``method``, score it on the test rows, and return the result record (GUIDE §3).

    ``seconds`` is the wall time of fitting and predicting (feature extraction excluded).
    """
    instance = build_method(method, hparams) if isinstance(method, str) else method
    logits, test, seconds, classifier = fit_and_predict(features, instance, seed, shots)
    metrics = classification_metrics(logits, test.labels) if test.labels is not None else {}
    return {
        "dataset": features.dataset,
        "model": features.model,
        "pretrained": features.pretrained,
        "task": f"{instance.setting.replace('-', '')}_classification",
        "method": instance.name,
        "setting": instance.setting,
        "hparams": {**instance.hparams(), **classifier.hparams},  # the classifier's record what the fit used
        "metrics": metrics,
        "seed": seed,
        "shots": shots,
        "seconds": round(seconds, 4),
    }
