from __future__ import annotations

import pytest
import torch

from clipadapt.evaluation.runner import run_method
from clipadapt.kernels import knn
from clipadapt.methods.transclip import class_log_likelihood, update_gaussians
from conftest import whurs19_files
from helpers import as_featureset, make_modality_gap


def test_gaussian_terms_match_the_direct_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    x, means = torch.randn(50, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    variance = torch.rand(7, generator=g, dtype=torch.float64) + 0.1
    direct = -0.5 * ((x[:, None] - means[None]) ** 2 / variance).sum(-1) - 0.5 * variance.log().sum()
    per_image = -0.5 * (x * x / variance).sum(1, keepdim=True) - 0.5 * variance.log().sum()
    assert torch.allclose(class_log_likelihood(x, means, variance) + per_image, direct)
    assert torch.allclose(class_log_likelihood(x, means, variance, 0.5), 0.5 * (direct - per_image))
    z = torch.softmax(torch.randn(50, 4, generator=g, dtype=torch.float64), dim=1)
    mu, var = update_gaussians(x, z)
    assert torch.allclose(mu, (z.T @ x) / z.sum(0)[:, None])
    assert torch.allclose(var, (z[:, :, None] * (x[:, None] - mu[None]) ** 2).sum((0, 1)) / 50)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transclip_beats_zeroshot_on_a_modality_gap_problem(seed: int) -> None:
    features = as_featureset(make_modality_gap(seed=seed))
    zeroshot = run_method(features, "zeroshot")["metrics"]["acc1"]
    record = run_method(features, "transclip")
    assert record["metrics"]["acc1"] > zeroshot + 0.01
    assert record["hparams"]["gmm_weight"] == 0.02 and record["hparams"]["neighbours"] == 3


def test_sketched_neighbour_search_finds_most_exact_neighbours_with_exact_similarities() -> None:
    x = torch.nn.functional.normalize(torch.from_numpy(make_modality_gap(seed=0, d=64)["image_features"]), dim=1)
    _, idx = knn(x, 5)
    approx_sims, approx_idx = knn(x, 5, block=100, sketch_dim=32)
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(idx, approx_idx, strict=True)) / idx.numel()
    assert recall > 0.8
    assert torch.allclose(approx_sims, (x[:, None] * x[approx_idx]).sum(-1), atol=1e-5), "re-ranked exactly"
    assert not (approx_idx == torch.arange(len(x))[:, None]).any(), "no self-neighbours"


@pytest.mark.skipif(not whurs19_files(), reason="shared WHU-RS19 features not present")
def test_transclip_on_whurs19_never_falls_below_zeroshot() -> None:
    from clipadapt.features import load_feature_file

    accs = []
    for path in whurs19_files():
        features = load_feature_file(path)
        zeroshot = run_method(features, "zeroshot")["metrics"]["acc1"]
        accs.append(run_method(features, "transclip")["metrics"]["acc1"])
        assert accs[-1] >= zeroshot - 0.005, path.name
    assert sum(accs) / len(accs) > 0.9707, "at least the published TransCLIP mean on these files"
