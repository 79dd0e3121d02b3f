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
from clipadapt.methods.encoder import TunedClassifier
from clipadapt.runtime import seed_everything


def test_subset(features: FeatureSet) -> FeatureSet:
    """The rows to score: the ``test`` split when the features have splits, else all of them."""
    return features if features.split is None else features.subset(test_rows(features.split, features.dataset))


class Prediction(NamedTuple):
    logits: torch.Tensor  # (N, C) for the test rows
    test: FeatureSet  # the test rows
    seconds: float
    classifier: Classifier
    target: FeatureSet  # the rows the method adapted on (the test rows, or the train rows when inductive)
    history: dict[str, list]  # per-epoch diagnostics of the fit


def train_subset(features: FeatureSet) -> FeatureSet:
    """The ``train`` rows, which an inductive adaptation adapts on."""
    if features.split is None or not (features.split == "train").any():
        raise MethodUnavailable(f"inductive adaptation needs a train split; {features.dataset!r} has none")
    return features.subset(features.split == "train")


def test_logits(classifier: Classifier, test: FeatureSet) -> torch.Tensor:
    """(N, C) logits of the test rows; a tuned-encoder classifier encodes their images itself."""
    if isinstance(classifier, TunedClassifier) and test.encoder is not None:
        return classifier.image_logits(test.encoder, test.normalised()[0])
    return classifier.logits(test.image_features)


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
    inductive = bool(getattr(method, "inductive", False))
    if shots is None:
        test = test_subset(features)
        target = train_subset(features) if inductive else test
    else:
        if inductive:
            raise MethodUnavailable("inductive adaptation and --shots do not go together")
        support, validation, test = few_shot_sets(features, shots, seed)
        target = test
        if method.setting != "few-shot":
            support = validation = None  # label-free methods never see a label
    seed_everything(seed)
    start = time.perf_counter()
    fit = method.fit(target.without_labels(), support, validation)
    transductive_logits = None if inductive else fit.target_logits
    logits = transductive_logits if transductive_logits is not None else test_logits(fit.classifier, test)
    return Prediction(logits, test, time.perf_counter() - start, fit.classifier, target, fit.history)


def history_record(history: dict[str, list], target: FeatureSet) -> dict[str, list[float]]:
    """The numeric per-epoch series of a fit's history; per-epoch ``pseudo_labels`` become their top-1
    against the target's labels when it has them (for plots: nothing is selected on them)."""
    out = {k: [float(v) for v in series] for k, series in history.items() if k != "pseudo_labels"}
    if "pseudo_labels" in history and target.labels is not None:
        out["pseudo_label_acc1"] = [
            float((torch.as_tensor(labels) == target.labels).float().mean()) for labels in history["pseudo_labels"]
        ]
    return out


def run_method(
    features: FeatureSet,
    method: str | Method,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    shots: int | None = None,
) -> dict[str, Any]:
    """Fit ``method``, score it on the test rows, and return the result record (GUIDE §3)."""
    return evaluate(features, method, seed, hparams, shots)[0]


def evaluate(
    features: FeatureSet,
    method: str | Method,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    shots: int | None = None,
) -> tuple[dict[str, Any], Prediction]:
    """The result record of one run and what it predicted (for artifacts and reports).

    ``seconds`` is the wall time of fitting and predicting (feature extraction excluded).
    """
    instance = build_method(method, hparams) if isinstance(method, str) else method
    prediction = fit_and_predict(features, instance, seed, shots)
    test = prediction.test
    metrics = classification_metrics(prediction.logits, test.labels) if test.labels is not None else {}
    record = {
        "dataset": features.dataset,
        "model": features.model,
        "pretrained": features.pretrained,
        "task": f"{instance.setting.replace('-', '')}_classification",
        "method": instance.name,
        "setting": instance.setting,
        "hparams": {**instance.hparams(), **prediction.classifier.hparams},  # what the fit used
        "metrics": metrics,
        "seed": seed,
        "shots": shots,
        "seconds": round(prediction.seconds, 4),
        "history": history_record(prediction.history, prediction.target),
    }
    return record, prediction
