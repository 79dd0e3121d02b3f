"""Contract tests over the method registry (as timm's run over its model registry): every registered method
gets each test, so that a new method is checked by adding its one file.

For every method: label-free methods never read labels (the same outputs with the true labels, shuffled
labels or none); target logits are (N, C); a saved classifier loads back to the same logits; its
hyperparameters round-trip through ``build_method`` and the command line's ``KEY=VALUE``; it says which
paper and which official code it follows and where its faithfulness rows are.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from clipadapt.artifact import load_classifier, save_classifier
from clipadapt.evaluation.fewshot import few_shot_sets
from clipadapt.methods import Fit, Method, build_method, list_methods, route_hparams
from clipadapt.runtime import seed_everything
from helpers import make_image_folder

NAMES = [cls.name for cls in list_methods()]
FAITHFULNESS = Path(__file__).resolve().parents[1] / "docs" / "faithfulness.md"
# Short schedules, so that the contract runs in seconds; the contract does not depend on them.
FAST = {"clip-enhance": {"epochs": 2}, "cmm": {"iterations": 40, "warmup_epochs": 1},
        "cross-modal-linear-probe": {"iterations": 40, "eval_every": 20}, "fair": {"epochs": 1, "crops": 4},
        "inmap": {"steps": 20}, "reclip": {"epochs": 1}, "tip-adapter-f": {"epochs": 2}}  # fmt: skip


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory, tiny_backbone):
    """12 images of 3 classes through the tiny open_clip backbone, with 2 stored crops each and the encoder
    attached (what every kind of method needs)."""
    from clipadapt.data import open_source
    from clipadapt.features import extract
    from clipadapt.features.store import FeatureStore

    folder = make_image_folder(tmp_path_factory.mktemp("contract") / "colours", per_class=4)
    store = FeatureStore(tmp_path_factory.mktemp("contract-cache"))
    prompts = ["a photo of a {c}.", "a {c}.", "a picture of a {c}.", "a drawing of a {c}.", "an image of a {c}."]
    return extract(tiny_backbone, open_source(str(folder)), prompts, store=store, batch_size=8,
                   num_workers=0, views=2)  # fmt: skip


def fitted(name: str, target, support=None, validation=None) -> Fit:
    seed_everything(0)
    return build_method(name, FAST.get(name)).fit(target, support, validation)


def sets(method: type[Method], features):
    """(target, support, validation): label-free methods get the unlabelled set; few-shot methods 1 shot."""
    if method.label_free:
        return dataclasses.replace(features, labels=None), None, None
    support, validation, test = few_shot_sets(features, shots=1, seed=0)
    return dataclasses.replace(test, labels=None), support, validation


def outputs(fit: Fit, target) -> torch.Tensor:
    return fit.target_logits if fit.target_logits is not None else fit.classifier.rows_logits(target)


@pytest.mark.parametrize("name", NAMES)
def test_target_logits_are_n_by_c_and_label_free_methods_ignore_labels(name: str, features) -> None:
    method = build_method(name).__class__
    target, support, validation = sets(method, features)
    fit = fitted(name, target, support, validation)
    n, c = len(target), len(target.classnames)
    if fit.target_logits is not None:
        assert fit.target_logits.shape == (n, c)
    assert fit.classifier.rows_logits(target).shape == (n, c)
    if method.label_free:
        true = fitted(name, features)
        shuffled = fitted(name, dataclasses.replace(features, labels=features.labels.flip(0)))
        assert torch.equal(outputs(true, features), outputs(fit, target))
        assert torch.equal(outputs(shuffled, features), outputs(fit, target))


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_classifier_loads_back_to_the_same_logits(name: str, features, tmp_path: Path) -> None:
    method = build_method(name).__class__
    target, support, validation = sets(method, features)
    classifier = fitted(name, target, support, validation).classifier
    loaded = load_classifier(save_classifier(classifier, tmp_path / name))
    assert type(loaded) is type(classifier)
    assert torch.allclose(loaded.rows_logits(target), classifier.rows_logits(target), atol=1e-6)


def command_line(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_round_trip(name: str) -> None:
    method = build_method(name)
    assert build_method(name, method.hparams()) == method
    pairs = [f"{key}={command_line(value)}" for key, value in method.hparams().items()]
    assert build_method(name, route_hparams([name], pairs)[name]) == method


@pytest.mark.parametrize("name", NAMES)
def test_every_method_says_where_it_comes_from(name: str) -> None:
    cls = build_method(name).__class__
    headings = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
                for line in FAITHFULNESS.read_text().splitlines() if line.startswith("## ")}  # fmt: skip
    assert cls.summary and cls.paper
    assert "arXiv:" in cls.paper or "OpenReview" in cls.paper
    assert cls.code == "" or cls.code.startswith("https://github.com/")
    assert cls.faithfulness in headings, f"docs/faithfulness.md has no section #{cls.faithfulness}"
