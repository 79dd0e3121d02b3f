from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from clipadapt.errors import ClipAdaptError
from clipadapt.evaluation.fewshot import sample_few_shot
from clipadapt.evaluation.runner import MethodUnavailable, fit_and_predict, run_method
from clipadapt.methods import build_method
from clipadapt.methods.cmm import ALPHAS, fused_log_probs, hardest_negative_triplet, validation_score, warmup_cosine
from clipadapt.methods.supervised import search, training_samples
from helpers import as_featureset, make_modality_gap

FEW_SHOT = ["cmm", "tip-adapter", "tip-adapter-f", "linear-probe", "cross-modal-linear-probe", "transclip-fs"]
FAST = {"cmm": {"iterations": 3000}}  # the paper's 16 000 iterations are for real datasets; tests stay fast


@pytest.mark.parametrize("shots", [1, 4, 16])
def test_sampler_never_leaks_and_draws_k_per_class(shots: int) -> None:
    labels = torch.arange(300) % 6
    rows = sample_few_shot(labels, shots, seed=3)
    train, val, test = (set(r.tolist()) for r in rows)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(300))
    assert torch.bincount(labels[rows.train], minlength=6).tolist() == [shots] * 6
    assert torch.bincount(labels[rows.validation], minlength=6).tolist() == [min(shots, 4)] * 6
    again = sample_few_shot(labels, shots, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(rows, again, strict=True))
    assert not torch.equal(sample_few_shot(labels, shots, seed=4).train, rows.train)


def test_sampler_with_splits_draws_from_train_and_scores_test_only() -> None:
    labels = torch.arange(200) % 4
    split = np.array(["train"] * 120 + ["test"] * 70 + ["val"] * 10)
    rows = sample_few_shot(labels, 8, seed=0, split=split)
    assert (split[rows.train.numpy()] == "train").all() and (split[rows.validation.numpy()] == "train").all()
    assert rows.test.tolist() == list(range(120, 190))


def test_sampler_says_when_a_class_is_too_small() -> None:
    labels = torch.tensor([0] * 30 + [1] * 5)
    with pytest.raises(ClipAdaptError, match="class 1 has 5"):
        sample_few_shot(labels, 4, seed=0)


def test_triplet_loss_matches_a_hand_computed_case() -> None:
    distances = torch.tensor([[0.2, 0.9, 0.5], [1.5, 0.3, 1.4]])
    labels = torch.tensor([0, 2])
    # sample 0: 0.2 − min(0.9, 0.5) + 1 = 0.7; sample 1: 1.4 − min(1.5, 0.3) + 1 = 2.1
    assert torch.isclose(hardest_negative_triplet(distances, labels), torch.tensor((0.7 + 2.1) / 2))
    assert torch.isclose(hardest_negative_triplet(distances, labels, margin=0.0), torch.tensor((0.0 + 1.1) / 2))


def test_warmup_then_cosine() -> None:
    rates = warmup_cosine(100, 10, 1e-4, 1e-5)
    assert torch.isclose(rates[9], torch.tensor(1e-4, dtype=torch.float64))
    assert (rates[:10].diff() > 0).all() and (rates[10:].diff() <= 0).all()
    assert torch.isclose(rates[-1], torch.tensor(1e-5, dtype=torch.float64), rtol=1e-2)


def test_training_samples_include_the_stored_views() -> None:
    features = as_featureset(make_modality_gap(n=60))
    features.view_features = torch.randn(60, 3, features.dim)
    x, y = training_samples(features)
    assert x.shape == (240, features.dim) and torch.equal(y[60:63], features.labels[0].repeat(3))
    assert training_samples(features, augment=False)[0].shape == (60, features.dim)


def _split_features(seed: int = 0):
    features = as_featureset(make_modality_gap(n=600, seed=seed))
    features.split = np.array(["train"] * 240 + ["test"] * 360)
    return features


@pytest.mark.parametrize("method", ["cmm", "tip-adapter", "linear-probe", "cross-modal-linear-probe", "transclip-fs"])
def test_model_selection_never_sees_test_labels(method: str) -> None:
    """Scrambling the test rows' labels changes neither the chosen hyperparameters nor a single logit."""
    features = _split_features()
    scrambled = _split_features()
    scrambled.labels = scrambled.labels.clone()
    scrambled.labels[240:] = scrambled.labels[240:][torch.randperm(360, generator=torch.Generator().manual_seed(1))]
    first = fit_and_predict(features, build_method(method, FAST.get(method)), seed=2, shots=4)
    second = fit_and_predict(scrambled, build_method(method, FAST.get(method)), seed=2, shots=4)
    assert torch.equal(first.logits, second.logits)
    assert first.classifier.hparams == second.classifier.hparams


@pytest.mark.parametrize("method", FEW_SHOT)
def test_few_shot_methods_beat_zeroshot_on_a_modality_gap_problem(method: str) -> None:
    for seed in (0, 1):
        features = as_featureset(make_modality_gap(n=600, seed=seed))
        zeroshot = run_method(features, "zeroshot", seed=seed, shots=16)
        record = run_method(features, method, seed=seed, shots=16, hparams=FAST.get(method))
        assert record["shots"] == 16 and record["setting"] == "few-shot"
        assert record["metrics"]["acc1"] > zeroshot["metrics"]["acc1"] + 0.01, (method, seed)


def test_few_shot_methods_need_shots_and_labels() -> None:
    features = as_featureset(make_modality_gap())
    with pytest.raises(MethodUnavailable, match="--shots"):
        run_method(features, "cmm")
    with pytest.raises(ClipAdaptError, match="no labels"):
        run_method(features.without_labels(), "tip-adapter", shots=2)


@pytest.mark.parametrize(
    "hparams", [{"triplet": False}, {"mapping": False}, {"clip_logits": False}, {"search_alpha": False}]
)
def test_cmm_ablations_run(hparams: dict) -> None:
    record = run_method(as_featureset(make_modality_gap()), "cmm", shots=2, hparams={"iterations": 200, **hparams})
    assert 0 < record["metrics"]["acc1"] <= 1
    assert record["hparams"]["alpha"] == 1.0 or hparams != {"search_alpha": False}


def test_cmm_fuses_probabilities_not_logits() -> None:
    """Eq. 9: α · p_cmm + p_clip; the classifier's logits are the log of that fusion, normalised."""
    g = torch.Generator().manual_seed(0)
    cmm, clip = torch.randn(5, 4, generator=g) * 10, torch.randn(5, 4, generator=g) * 10
    fused = fused_log_probs(cmm.log_softmax(1), clip.log_softmax(1), 0.3).exp()
    assert torch.allclose(fused, (0.3 * cmm.softmax(1) + clip.softmax(1)) / 1.3, atol=1e-6)
    assert torch.allclose(fused.sum(1), torch.ones(5))
    # two branches that split their mass differently: adding logits favours class 1, fusing probabilities class 0
    cmm, clip = torch.tensor([[0.0, 3.5, 3.5]]), torch.tensor([[3.0, 0.0, 0.0]])
    assert (cmm + clip).argmax() == 1 and fused_log_probs(cmm.log_softmax(1), clip.log_softmax(1), 1.0).argmax() == 0
    assert torch.allclose(fused_log_probs(cmm.log_softmax(1), None, 0.3), cmm.log_softmax(1))


def test_cmm_classifier_and_training_loss_use_the_fused_probabilities() -> None:
    features = as_featureset(make_modality_gap(n=300))
    prediction = fit_and_predict(features, build_method("cmm", {"iterations": 50}), seed=0, shots=2)
    classifier = prediction.classifier
    x = torch.nn.functional.normalize(prediction.test.image_features, dim=-1)
    p_cmm = (100 * torch.nn.functional.normalize(x + x @ classifier.mapping.T, dim=-1)
             @ torch.nn.functional.normalize(classifier.texts, dim=-1).T).softmax(1)  # fmt: skip
    p_clip = (100 * x @ classifier.weights.T).softmax(1)
    alpha = classifier.alpha
    assert torch.allclose(classifier.logits(prediction.test.image_features).exp(),
                          (alpha * p_cmm + p_clip) / (1 + alpha), atol=1e-5)  # fmt: skip


def test_cmm_alpha_search_takes_the_best_accuracy_then_the_lowest_validation_nll() -> None:
    from clipadapt.evaluation.fewshot import few_shot_sets

    labels = torch.tensor([0, 1])
    candidates = {
        "wrong": torch.tensor([[0.4, 0.6], [0.2, 0.8]]).log(),  # top-1 0.5
        "hesitant": torch.tensor([[0.6, 0.4], [0.4, 0.6]]).log(),  # top-1 1.0, NLL 0.51
        "confident": torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log(),  # top-1 1.0, NLL 0.16
    }
    assert search(list(candidates), lambda k: validation_score(candidates[k], labels))[0] == "confident"
    assert search(ALPHAS, lambda a: (1.0, 0.0))[0] == 0.1, "exact ties: the smaller α"
    # end to end: the chosen α is the rule's argmax over the grid, recomputed from the fitted classifier
    features = as_featureset(make_modality_gap(n=600))
    prediction = fit_and_predict(features, build_method("cmm", {"iterations": 300}), seed=0, shots=4)
    _, validation, _ = few_shot_sets(features, 4, 0)
    chosen = prediction.classifier.alpha
    scores = {}
    for alpha in ALPHAS:
        prediction.classifier.alpha = alpha
        scores[alpha] = validation_score(prediction.classifier.logits(validation.image_features), validation.labels)
    best = max(scores.values())
    assert chosen == min(a for a, v in scores.items() if v == best)
    assert prediction.classifier.hparams["validation_nll"] == pytest.approx(-best[1])


def test_tip_adapter_grid_covers_every_official_range_and_initial_value() -> None:
    betas, alphas = build_method("tip-adapter").search_grid()
    assert betas == sorted(betas) and alphas == sorted(alphas)
    assert betas[0] == alphas[0] == 0.1 and betas[-1] == alphas[-1] == 50.0  # official [S_β, S_α] up to [50, 50]
    assert {1.17, 2.0, 3.0, 5.0, 10.0} <= set(alphas) and 1.0 in betas
    assert max(b / a for a, b in itertools.pairwise(betas)) < 1.04, "β steps of at most 4 %"
    # the official per-dataset formula stays available: ImageNet's [7, 3]
    betas, alphas = build_method("tip-adapter", {"grid": "linear", "beta_max": 7.0, "alpha_max": 3.0,
                                                 "alpha_steps": 20}).search_grid()  # fmt: skip
    assert len(betas) == 200 and betas[1] == round(0.1 + 6.9 / 200, 6) and alphas[-1] == round(0.1 + 19 * 2.9 / 20, 6)


def test_grid_adamw_is_torch_adamw_with_one_lr_and_weight_decay_per_grid_point() -> None:
    from clipadapt.methods.linear_probe import GridAdamW

    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    lrs, decays = torch.tensor([1e-3, 1e-2, 1e-4]), torch.tensor([0.0, 1e-2, 1e-4])
    reference = [start[i].clone().requires_grad_(True) for i in range(3)]
    torch_adamw = torch.optim.AdamW([{"params": [p], "lr": float(lr), "weight_decay": float(wd)}
                                     for p, lr, wd in zip(reference, lrs, decays, strict=True)])  # fmt: skip
    ours, grid = start.clone(), GridAdamW(start)
    for _ in range(5):
        grads = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
        for p, grad in zip(reference, grads, strict=True):
            p.grad = grad.clone()
        torch_adamw.step()
        ours = grid.step(ours, grads, lrs, decays)
    assert torch.allclose(ours, torch.stack([p.detach() for p in reference]), atol=1e-12)


def test_cross_modal_probe_schedule_grid_and_batches_follow_the_official_recipe() -> None:
    from clipadapt.methods.linear_probe import CROSS_MODAL_GRID, loader_indices, warmup_then_cosine

    rates = warmup_then_cosine(12800, 50, 1e-3, 1e-5)
    assert rates[0] == 1e-5 and torch.isclose(rates[25], torch.tensor(5e-4, dtype=torch.float64))
    assert rates[50] == 1e-3 and (rates[50:].diff() <= 0).all() and rates[-1] > 0
    assert (
        len(CROSS_MODAL_GRID) == 12
        and CROSS_MODAL_GRID[0] == (1e-3, 0.0, 8)
        and CROSS_MODAL_GRID[-1] == (1e-4, 1e-4, 32)
    )
    torch.manual_seed(0)
    rows = loader_indices(10, 4, 5)  # drop-last: 2 batches per pass over 10 samples, then a new permutation
    assert rows.shape == (5, 4) and len(set(rows[:2].flatten().tolist())) == 8 and rows.max() < 10
    # end to end: the half-text batches make the text samples matter, and the grid is searched on validation only
    features = as_featureset(make_modality_gap(n=600))
    record = run_method(features, "cross-modal-linear-probe", seed=0, shots=4, hparams={"iterations": 300})
    hp = record["hparams"]
    assert (hp["lr"], hp["weight_decay"], hp["batch_size"]) in CROSS_MODAL_GRID and hp["text_samples"] == 6
    assert 0 <= hp["best_iteration"] < 300 and hp["best_iteration"] % 100 == 0
