"""Run one method on one FeatureSet and report it as a result record (the result-JSON contract)."""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import torch

from clipadapt.errors import ClipAdaptError, MethodUnavailable
from clipadapt.evaluation.diagnostics import label_free_diagnostics
from clipadapt.evaluation.episodes import Protocol, target_sets
from clipadapt.evaluation.fewshot import few_shot_sets, test_rows
from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels.metrics import classification_metrics
from clipadapt.methods import Classifier, Method, build_method
from clipadapt.runtime import Precision, float32_matmuls, resolve_device, seed_everything

log = logging.getLogger("clipadapt")


def test_subset(features: FeatureSet) -> FeatureSet:
    """The rows to score: the ``test`` split when the features have splits, else all of them."""
    return features if features.split is None else features.subset(test_rows(features.split, features.dataset))


class Prediction(NamedTuple):
    logits: torch.Tensor  # (N, C) for the test rows, on the CPU
    test: FeatureSet  # the test rows (where the caller's features are)
    seconds: float
    classifier: Classifier  # on the CPU
    target: FeatureSet  # the rows the method adapted on (the test rows, or the train rows when inductive)
    history: dict[str, list]  # per-epoch diagnostics of the fit
    device: torch.device  # where the method ran
    precision: Precision  # the precision policy it ran under
    transductive: bool  # the logits are the fit's own predictions on its target, not the classifier's


def train_subset(features: FeatureSet) -> FeatureSet:
    """The ``train`` rows, which an inductive adaptation adapts on."""
    if features.split is None or not (features.split == "train").any():
        raise MethodUnavailable(f"inductive adaptation needs a train split; {features.dataset!r} has none")
    return features.subset(features.split == "train")


def run_precision(features: FeatureSet, precision: str | None) -> str:
    """The precision a run uses: ``precision``, else the backbone's when the features have one, else auto."""
    if precision is not None:
        return precision
    return features.encoder.backbone.precision if features.encoder is not None else "auto"


def fit_and_predict(
    features: FeatureSet,
    method: Method,
    seed: int = 0,
    shots: int | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> Prediction:
    """Fit ``method`` and return the test logits, the test rows, the seconds taken and the classifier.

    The method sees the test features *without labels*; labels are read only to score, by the caller. With
    ``shots`` = K, the K-shot protocol of :mod:`clipadapt.evaluation.fewshot` (seeded by ``seed``) picks the
    labelled support and validation rows and the test rows; every method, few-shot or not, is then scored
    on those same test rows, so that the numbers compare.

    The method runs on ``device`` (default: the backbone's when the features have one, else where the
    features are): its rows are moved there once, and it runs under the precision policy ``precision``
    (:mod:`clipadapt.runtime`; default: the backbone's, or auto). ``seconds`` includes waiting for the
    device. The logits and classifier come back on the CPU.
    """
    if device is None:
        device = features.encoder.backbone.device if features.encoder is not None else features.device
    device = resolve_device(device)
    precision = run_precision(features, precision)
    if method.setting == "inductive":
        raise MethodUnavailable(f"method {method.name!r} ({method.setting}) is not supported by this runner yet")
    if method.setting == "few-shot" and shots is None:
        raise MethodUnavailable(f"method {method.name!r} is few-shot: give --shots K")
    support = validation = None
    inductive = method.adapts_on_train_split
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
    target_on = target.to(device)  # each part moved once (the test rows are the target rows unless inductive)
    test_on = target_on if test is target else test.to(device)
    support_on, validation_on = (None if part is None else part.to(device) for part in (support, validation))
    with float32_matmuls(device, precision) as policy:
        seed_everything(seed)
        start = time.perf_counter()
        fit = method.fit(target_on.without_labels(), support_on, validation_on)
        transductive_logits = None if inductive else fit.target_logits
        logits = transductive_logits if transductive_logits is not None else fit.classifier.rows_logits(test_on)
        logits = logits.float().cpu()  # waits for the device: part of the time taken
        seconds = time.perf_counter() - start
    classifier = fit.classifier.to("cpu")
    transductive = transductive_logits is not None
    return Prediction(logits, test, seconds, classifier, target, fit.history, device, policy, transductive)


@torch.no_grad()
def classifier_metrics(prediction: Prediction) -> dict[str, float] | None:
    """For a transductive run, what the saved classifier itself gives on the same test rows (what
    ``predict`` gives on those images): its metrics when they have labels, and the fraction of rows where
    it agrees with the transductive predictions. None when the run's predictions are the classifier's."""
    if not prediction.transductive:
        return None
    test = prediction.test.to(prediction.device)
    with float32_matmuls(prediction.device, prediction.precision.requested):
        logits = prediction.classifier.to(prediction.device).rows_logits(test).float().cpu()
    metrics = classification_metrics(logits, prediction.test.labels) if prediction.test.labels is not None else {}
    agreement = (logits.argmax(1) == prediction.logits.argmax(1)).double().mean()
    return {**metrics, "agreement_with_transductive": float(agreement)}


LABEL_SERIES = {"pseudo_labels": "pseudo_label_acc1", "predictions": "epoch_acc1"}  # per-epoch labels → top-1


def history_record(history: dict[str, list], target: FeatureSet) -> dict[str, list[float]]:
    """The numeric per-epoch series of a fit's history; per-epoch ``pseudo_labels`` and ``predictions``
    become their top-1 against the target's labels when it has them (``pseudo_label_acc1``,
    ``epoch_acc1``; for plots: nothing is selected on them)."""
    out = {k: [float(v) for v in series] for k, series in history.items() if k not in LABEL_SERIES}
    if target.labels is not None:
        labels_cpu = target.labels.cpu()
        for key, name in LABEL_SERIES.items():
            if key in history:
                out[name] = [float((torch.as_tensor(lab).cpu() == labels_cpu).float().mean()) for lab in history[key]]
    return out


def run_method(
    features: FeatureSet,
    method: str | Method,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    shots: int | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Fit ``method``, score it on the test rows, and return the result record."""
    return evaluate(features, method, seed, hparams, shots, device, precision)[0]


def evaluate(
    features: FeatureSet,
    method: str | Method,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    shots: int | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
    warn: bool = True,
) -> tuple[dict[str, Any], Prediction]:
    """The result record of one run and what it predicted (for artifacts and reports).

    ``seconds`` is the wall time of fitting and predicting (feature extraction excluded); ``runtime`` says
    where the method ran and under which precision policy (:func:`fit_and_predict`). A label-free run also
    records its label-free ``diagnostics`` (:mod:`clipadapt.evaluation.diagnostics`) and, when they show that
    an assumption of the method does not hold, a ``warning`` (logged unless ``warn`` is False).
    """
    instance = build_method(method, hparams) if isinstance(method, str) else method
    prediction = fit_and_predict(features, instance, seed, shots, device, precision)
    test = prediction.test
    metrics = classification_metrics(prediction.logits, test.labels) if test.labels is not None else {}
    record = {
        "dataset": features.dataset,
        "model": features.model,
        "pretrained": features.pretrained,
        "task": f"{instance.setting.replace('-', '')}_classification",
        "method": instance.name,
        "setting": instance.setting,
        "hparams": {**instance.hparams(), **prediction.classifier.hparams},  # what the fit used and decided
        "config": instance.hparams(),  # as configured: what tells one setting from another (build groups by it)
        "classes": features.num_classes,
        "text_digest": features.text_digest(),  # class names and prompts
        "protocol": Protocol().record(),
        "metrics": metrics,
        "seed": seed,
        "shots": shots,
        "seconds": round(prediction.seconds, 4),
        "runtime": {"device": str(prediction.device), **prediction.precision.record()},
        "history": history_record(prediction.history, prediction.target),
    }
    if instance.label_free and instance.setting != "few-shot":
        record["diagnostics"] = label_free_diagnostics(
            prediction.logits.argmax(1), zeroshot_predictions(test), test.num_classes
        )
        warning = instance.assumption_warning(record["diagnostics"])
        if warning is not None:
            record["warning"] = warning
            if warn:
                log.warning(warning)
    return record, prediction


@torch.no_grad()
def zeroshot_predictions(features: FeatureSet, block: int = 65536) -> torch.Tensor:
    """(N,) zero-shot CLIP's class for every row, over row blocks (no (N, C) matrix)."""
    x, text = features.normalised()
    return torch.cat([(rows @ text.T).argmax(1) for rows in x.split(block)]).cpu()


def evaluate_protocol(
    features: FeatureSet,
    method: str | Method,
    protocol: Protocol,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> tuple[dict[str, Any], Prediction | None]:
    """The record of ``method`` on the target sets of ``protocol`` (:mod:`clipadapt.evaluation.episodes`),
    drawn from the test rows with ``seed``; the prediction too when there is one target set.

    Each episode is a run of its own (the method sees its rows without labels); the record's ``metrics``
    and ``diagnostics`` are the means over the episodes, ``episodes`` holds each one's, and ``seconds`` is
    their sum. A method whose assumption fails in some episodes warns once, saying in how many.
    """
    instance = build_method(method, hparams) if isinstance(method, str) else method
    if protocol.whole:
        return evaluate(features, instance, seed, device=device, precision=precision)
    if not instance.label_free or instance.setting == "few-shot":
        raise MethodUnavailable(f"{instance.name} is few-shot: --episodes and --imbalance are for label-free methods")
    test = test_subset(features)
    if test.labels is None:
        raise ClipAdaptError(
            "--episodes and --imbalance draw target sets by their labels, and these features have none"
        )
    sets = target_sets(test.labels.numpy(), protocol, seed)
    runs = [
        evaluate(test.subset(rows), instance, seed, device=device, precision=precision, warn=False) for rows in sets
    ]
    records = [record for record, _ in runs]
    warned = [r["warning"] for r in records if "warning" in r]
    if warned:
        log.warning("%s (in %d of %d target sets)", warned[0], len(warned), len(records))
    record = {**records[0], "protocol": protocol.record(), "history": {} if len(runs) > 1 else records[0]["history"]}
    record.pop("warning", None)
    if len(runs) == 1:
        return {**record, **({"warning": warned[0]} if warned else {})}, runs[0][1]
    record["metrics"] = _mean_of([r["metrics"] for r in records])
    record["diagnostics"] = _mean_of([r["diagnostics"] for r in records])
    record["seconds"] = round(sum(r["seconds"] for r in records), 4)
    record["episodes"] = [
        {"classes_present": int(test.labels[rows].unique().numel()), **r["metrics"], **r["diagnostics"]}
        for rows, r in zip(sets, records, strict=True)
    ]
    return record, None


def _mean_of(dicts: list[dict[str, Any]]) -> dict[str, float]:
    return {k: round(sum(float(d[k]) for d in dicts) / len(dicts), 6) for k in dicts[0]} if dicts else {}
