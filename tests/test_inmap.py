from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError
from clipadapt.evaluation.runner import run_method
from clipadapt.kernels import sinkhorn_balance
from clipadapt.methods.inmap import (
    harden,
    learn_vision_proxies,
    learn_vision_proxies_lbfgs,
    proxy_loss,
    proxy_loss_and_grad,
)
from helpers import as_featureset, make_modality_gap


def test_sinkhorn_rows_sum_to_one_and_classes_are_balanced() -> None:
    torch.manual_seed(0)
    scores = torch.randn(300, 5) * 0.1
    scores[:, 0] += 0.2  # a class that zero-shot would over-predict
    balanced = sinkhorn_balance(scores, tau=0.01, iterations=50)
    assert torch.allclose(balanced.sum(1), torch.ones(300), atol=1e-5)
    assert torch.allclose(balanced.sum(0), torch.full((5,), 60.0), rtol=5e-3)  # Sinkhorn converges geometrically
    raw = torch.softmax(scores / 0.01, dim=1).sum(0)
    assert raw[0] > 150, "before balancing, class 0 takes most of the mass"


def test_sinkhorn_follows_a_prior() -> None:
    torch.manual_seed(0)
    scores = torch.randn(400, 4)
    prior = torch.tensor([0.4, 0.3, 0.2, 0.1])
    balanced = sinkhorn_balance(scores, tau=0.1, iterations=200, prior=prior)
    assert torch.allclose(balanced.sum(0) / 400, prior, atol=1e-3)


def test_sinkhorn_is_finite_at_tiny_temperatures() -> None:
    scores = torch.randn(400, 4) * 5
    balanced = sinkhorn_balance(scores, tau=1e-4, iterations=20)
    assert torch.isfinite(balanced).all() and torch.allclose(balanced.sum(1), torch.ones(400), atol=1e-5)


def test_sinkhorn_writes_into_its_own_scores_buffer_with_the_same_result() -> None:
    scores = torch.randn(300, 7, generator=torch.Generator().manual_seed(3))
    expected = sinkhorn_balance(scores, tau=0.01, iterations=20)
    buffer = scores.clone()
    assert sinkhorn_balance(buffer, tau=0.01, iterations=20, out=buffer) is buffer
    assert torch.equal(buffer, expected)


def test_harden_makes_the_confident_rows_one_hot_in_place() -> None:
    labels = torch.softmax(3 * torch.randn(200, 5, generator=torch.Generator().manual_seed(4)), dim=1)
    confident, top = labels.max(dim=1)
    expected = torch.where((confident > 0.6)[:, None], F.one_hot(top, 5).float(), labels)
    hardened, hard = harden(labels, 0.6)
    assert hardened is labels and torch.equal(hardened, expected)
    assert 0 < int(hard.sum()) < 200 and torch.equal(hard, confident > 0.6)


def test_proxies_move_to_the_image_class_means_with_true_labels() -> None:
    arrays = make_modality_gap()
    x = F.normalize(torch.from_numpy(arrays["image_features"]), dim=1)
    y = F.one_hot(torch.from_numpy(arrays["labels"])).float()
    text = F.normalize(torch.from_numpy(arrays["text_features"]), dim=1)
    proxies, steps = learn_vision_proxies(x, text, y, steps=300)
    assert steps == 300 and torch.allclose(proxies.norm(dim=1), torch.ones(6), atol=1e-5)
    means = F.normalize(y.T @ x, dim=1)
    assert (proxies * means).sum(1).min() > (text * means).sum(1).max(), "closer to the image means than the text"


def test_lbfgs_reaches_the_official_solvers_objective_in_far_fewer_evaluations() -> None:
    features = as_featureset(make_modality_gap(seed=1))
    x, text = features.normalised()
    labels = sinkhorn_balance(x @ text.T, 0.01, 20)
    official, _ = learn_vision_proxies(x, text, labels, steps=2000)
    fast, used = learn_vision_proxies_lbfgs(x, text, labels, evaluations=25)
    assert used <= 25 and torch.allclose(fast.norm(dim=1), torch.ones(len(text)), atol=1e-5)
    start, target, reached = (proxy_loss(x, w, labels, 0.04) for w in (text, official, fast))
    assert reached < start and float(reached) <= float(target) * 1.01, (start, target, reached)


def test_written_out_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    x = F.normalize(torch.randn(50, 8, dtype=torch.float64), dim=1)
    labels = torch.softmax(torch.randn(50, 4, dtype=torch.float64), dim=1)
    free = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    expected = proxy_loss(x, F.normalize(free, dim=1), labels, 0.04)
    expected.backward()
    loss, grad = proxy_loss_and_grad(x, free.detach(), labels, 0.04)
    assert torch.allclose(loss, expected) and torch.allclose(grad, free.grad, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inmap_beats_zeroshot_on_a_modality_gap_problem(seed: int) -> None:
    features = as_featureset(make_modality_gap(seed=seed))
    zeroshot = run_method(features, "zeroshot")["metrics"]["acc1"]
    inmap = run_method(features, "inmap")
    assert inmap["metrics"]["acc1"] > zeroshot + 0.01
    assert inmap["setting"] == "transductive" and inmap["hparams"]["tau_image"] == 0.04


@pytest.mark.parametrize(
    "hparams",
    [
        {"sinkhorn_iterations": 0},
        {"threshold": 1.0},
        {"solver": "gd", "steps": 5},
        {"solver": "lbfgs", "evaluations": 0},
    ],
)
def test_inmap_ablations_run(hparams: dict) -> None:
    features = as_featureset(make_modality_gap())
    record = run_method(features, "inmap", hparams=hparams)
    assert 0 < record["metrics"]["acc1"] <= 1 and record["hparams"] | hparams == record["hparams"]


@pytest.mark.parametrize("hparams", [{"solver": "lbfgs", "evaluations": 0}, {"solver": "gd", "steps": 0}])
def test_inmap_with_no_steps_is_zeroshot(hparams: dict) -> None:
    features = as_featureset(make_modality_gap())
    assert run_method(features, "inmap", hparams=hparams)["metrics"] == run_method(features, "zeroshot")["metrics"]


def test_inmap_rejects_an_unknown_solver() -> None:
    with pytest.raises(ClipAdaptError, match="solver"):
        run_method(as_featureset(make_modality_gap()), "inmap", hparams={"solver": "adam"})


def test_inmap_runs_the_official_solver_where_it_is_affordable_and_says_which_ran() -> None:
    features = as_featureset(make_modality_gap())  # 600 × 6 × 32
    assert run_method(features, "inmap", hparams={"steps": 3})["hparams"]["solver_used"] == "gd"
    large = run_method(features, "inmap", hparams={"gd_max_size": 1000.0})
    assert large["hparams"]["solver_used"] == "lbfgs"
