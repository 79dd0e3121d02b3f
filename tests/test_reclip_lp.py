from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipadapt.evaluation.runner import run_method
from clipadapt.kernels import conjugate_gradient, knn, knn_graph, propagate_labels
from clipadapt.methods.reclip_lp import text_basis
from helpers import as_featureset, make_modality_gap


def _dense_reference_graph(points: torch.Tensor, k: int) -> torch.Tensor:
    sims = points @ points.T
    sims.fill_diagonal_(-float("inf"))
    top, idx = sims.topk(k, dim=1)
    a = torch.zeros_like(sims).scatter_(1, idx, (top + 1) / 2)
    w = a + a.T
    d = w.sum(1).rsqrt()
    return d[:, None] * w * d[None, :]


def test_knn_graph_matches_a_dense_reference_and_is_sparse() -> None:
    torch.manual_seed(0)
    points = F.normalize(torch.randn(50, 8), dim=1)
    graph = knn_graph(points, k=5)
    assert torch.allclose(graph.to_dense(), _dense_reference_graph(points, 5), atol=1e-6)
    assert torch.equal(knn(points, 5, block=7)[1], knn(points, 5)[1]), "blocks that do not divide M"
    assert graph._nnz() <= 2 * 5 * 50
    assert torch.allclose(graph.to_dense(), graph.to_dense().T) and graph.to_dense().diagonal().abs().max() == 0


def test_conjugate_gradient_solves_an_spd_system() -> None:
    torch.manual_seed(0)
    m = torch.randn(30, 30, dtype=torch.float64)
    a = m @ m.T + 30 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, 3, dtype=torch.float64)
    x = conjugate_gradient(lambda v, out: torch.matmul(a, v, out=out), b, iterations=100, tol=1e-12)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)


def test_label_propagation_on_a_graph_with_a_known_answer() -> None:
    # two separate clusters, one seed each: every node must take its cluster's label
    torch.manual_seed(0)
    a, b = torch.randn(8), torch.randn(8)
    cluster_a = F.normalize(a + 0.05 * torch.randn(10, 8), dim=1)
    cluster_b = F.normalize(b + 0.05 * torch.randn(10, 8), dim=1)
    points = torch.cat([cluster_a[:1], cluster_b[:1], cluster_a[1:], cluster_b[1:]])
    graph = knn_graph(points, k=3)
    seeds = torch.zeros(20, 2)
    seeds[0, 0] = seeds[1, 1] = 1
    z = propagate_labels(graph, seeds, alpha=0.99, iterations=100)
    assert z[2:11].argmax(1).eq(0).all() and z[11:].argmax(1).eq(1).all()
    dense = torch.linalg.solve(torch.eye(20) - 0.99 * graph.to_dense(), seeds)
    assert torch.allclose(z, dense, atol=1e-3)


def test_projection_bases() -> None:
    text = F.normalize(torch.randn(6, 16), dim=1)
    for name, rank in (("P0", 16), ("P1", 6), ("P2", 5)):
        basis = text_basis(text, name)
        assert basis.shape == (16, rank) and torch.allclose(basis.T @ basis, torch.eye(rank), atol=1e-5)
    p1 = text_basis(text, "P1")
    assert torch.allclose(text @ p1 @ p1.T, text, atol=1e-5), "P1 keeps the text features"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reclip_lp_beats_zeroshot_on_a_modality_gap_problem(seed: int) -> None:
    features = as_featureset(make_modality_gap(seed=seed))
    zeroshot = run_method(features, "zeroshot")["metrics"]["acc1"]
    assert run_method(features, "reclip-lp")["metrics"]["acc1"] > zeroshot + 0.01


@pytest.mark.parametrize("hparams", [{"projection": "P0"}, {"projection": "P1"}, {"max_propagation_classes": 2}])
def test_reclip_lp_variants_run(hparams: dict) -> None:
    record = run_method(as_featureset(make_modality_gap(seed=0)), "reclip-lp", hparams=hparams)
    assert 0 < record["metrics"]["acc1"] <= 1
