from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipadapt.evaluation.runner import run_method
from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels import knn
from clipadapt.methods import build_method
from clipadapt.methods.transclip import (
    fixed_part,
    initial_means,
    neighbour_graph,
    shot_graph_term,
    update_gaussians,
    weighted_squares,
)
from conftest import whurs19_files
from helpers import as_featureset, make_modality_gap

# RS-TransCLIP's published transductive top-1 on the shared WHU-RS19 files (GUIDE §5)
PUBLISHED = {
    "CLIP_RN50": 95.92, "CLIP_ViT-B-32": 90.35, "CLIP_ViT-L-14": 99.10, "GeoRSCLIP_ViT-B-32": 98.71,
    "GeoRSCLIP_ViT-L-14": 98.91, "RemoteCLIP_RN50": 98.41, "RemoteCLIP_ViT-B-32": 97.91, "RemoteCLIP_ViT-L-14": 97.21,
}  # fmt: skip


def dense_transclip(x, text, lam=1.0, shots=None, shot_labels=None, gamma=0.0, z=None, mu=None, var=None, k=3):
    """The official solver written out densely, one formula per line (facts sheet §1), in float64.

    Few-shot: W has rows [shots; queries] and columns queries; the graph term pairs each row of W with the z
    of the *same* image (the objective's reading; see the module docstring)."""
    n, d = x.shape
    c = text.shape[0]
    y_hat = torch.softmax(100 * x @ text.T, dim=1)
    z = y_hat.clone() if z is None else z
    nodes = x if shots is None else torch.cat([shots, x])
    sims = nodes @ x.T  # (S+N, N)
    if shots is None:
        sims.fill_diagonal_(-float("inf"))
    else:
        sims[len(shots) :].fill_diagonal_(-float("inf"))
    w = torch.zeros_like(sims)
    top = sims.topk(k, dim=1)
    w.scatter_(1, top.indices, top.values)
    s = 0 if shots is None else len(shots)
    y_shots = None if shots is None else F.one_hot(shot_labels, c).double()
    if mu is None:
        if shots is None:
            idx = z.topk(8, dim=0).indices
            mu = torch.stack([(z[idx[:, j], j, None] * x[idx[:, j]]).sum(0) / 8 for j in range(c)])
        else:
            mu = y_shots.T @ shots
        mu = mu / mu.norm(dim=1, keepdim=True)
        var = torch.full((d,), 1.0 / d, dtype=x.dtype)
    for step in range(11):
        ll = -0.5 * ((x[:, None, :] - mu[None]) ** 2 / var).sum(-1)  # (N, C)
        for _ in range(5):
            z_all = z if shots is None else torch.cat([y_shots, z])  # rows in W's order
            graph = w[s:] @ z + w.T @ z_all  # (W z)_query rows + (Wᵀ z)
            logits = ll / 50 + graph / (2 * k)
            z = y_hat**lam * torch.exp(logits - logits.max(1, keepdim=True).values)
            z = z / z.sum(1, keepdim=True)
        if step == 10:
            break
        wq = 1.0 / n
        num = wq * z.T @ x
        den = wq * z.sum(0)[:, None]
        if shots is not None:
            ws = gamma * 50 / s
            num = num + ws * y_shots.T @ shots
            den = den + ws * y_shots.sum(0)[:, None]
        mu = num / den
        mu = mu / mu.norm(dim=1, keepdim=True)
        spread = wq * torch.einsum("nc,ncd->d", z, (x[:, None] - mu[None]) ** 2)
        total = wq * z.sum()
        if shots is not None:
            spread = spread + ws * torch.einsum("sc,scd->d", y_shots, (shots[:, None] - mu[None]) ** 2)
            total = total + ws * y_shots.sum()
        var = spread / total
    return z, mu, var


def _problem(seed: int, n: int = 90, c: int = 4, d: int = 12):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(c, d, generator=g, dtype=torch.float64), dim=1)
    labels = torch.arange(n) % c
    x = F.normalize(centres[labels] + 0.4 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    text = F.normalize(centres + 0.6 * torch.randn(c, d, generator=g, dtype=torch.float64), dim=1)
    return x, text, labels, g


def test_gaussian_terms_match_the_direct_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    x, means = torch.randn(50, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    variance = torch.rand(7, generator=g, dtype=torch.float64) + 0.1
    direct = -0.5 * ((x[:, None] - means[None]) ** 2 / variance).sum(-1)
    per_image = -0.5 * (x * x / variance).sum(1, keepdim=True)
    assert torch.allclose(fixed_part(x, means, variance) + per_image, direct)
    assert torch.allclose(fixed_part(x, means, variance, 0.5), 0.5 * (direct - per_image))
    text = F.normalize(torch.randn(4, 7, generator=g, dtype=torch.float64), dim=1)
    log_zeroshot = torch.log_softmax(100 * F.normalize(x, dim=1) @ text.T, dim=1)
    with_text = fixed_part(F.normalize(x, dim=1), means, variance, 0.02, 100 * 0.5 * text)
    direct = -0.5 * ((F.normalize(x, dim=1)[:, None] - means[None]) ** 2 / variance).sum(-1)
    offset = with_text - (0.02 * direct + 0.5 * log_zeroshot)  # what the z-update's softmax drops
    assert torch.allclose(offset, offset[:, :1].expand_as(offset)), "the rest is the same for every class"
    z = torch.softmax(torch.randn(50, 4, generator=g, dtype=torch.float64), dim=1)
    mu, var = update_gaussians(x, z)
    direct_mu = F.normalize((z.T @ x) / z.sum(0)[:, None], dim=1)
    assert torch.allclose(mu, direct_mu), "means are normalised after the weighted mean"
    assert torch.allclose(var, (z[:, :, None] * (x[:, None] - direct_mu[None]) ** 2).sum((0, 1)) / 50), "new μ"


def test_weighted_squares_over_row_blocks() -> None:
    g = torch.Generator().manual_seed(5)
    w, f = torch.rand(50, generator=g, dtype=torch.float64), torch.randn(50, 7, generator=g, dtype=torch.float64)
    assert torch.allclose(weighted_squares(w, f, block=8), (w[:, None] * f * f).sum(0))


def test_mean_initialisation_by_hand() -> None:
    # class 0's 8 most confident images are rows 0..7 (z = 0.9) and class 1's rows 8..15 (z = 0.8)
    x = torch.zeros(16, 2, dtype=torch.float64)
    x[:8, 0], x[:8, 1] = 1.0, torch.arange(8, dtype=torch.float64) / 10
    x[8:, 1] = 1.0
    z = torch.zeros(16, 2, dtype=torch.float64)
    z[:8] = torch.tensor([0.9, 0.1], dtype=torch.float64)
    z[8:] = torch.tensor([0.2, 0.8], dtype=torch.float64)
    mu = initial_means(x, z)
    # (1/8) Σ 0.9 · (1, i/10) = (0.9, 0.315) before normalisation; class 1: (0, 0.8) → (0, 1)
    expected0 = torch.tensor([0.9, 0.9 * 2.8 / 8], dtype=torch.float64)
    assert torch.allclose(mu[0], expected0 / expected0.norm())
    assert torch.allclose(mu[1], torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_graph_is_the_symmetrised_raw_cosine_of_three_neighbours_over_2k() -> None:
    x, *_ = _problem(0, n=30)
    graph = neighbour_graph(x, 3, exact_max=10_000).to_dense()
    sims = x @ x.T
    sims.fill_diagonal_(-float("inf"))
    top = sims.topk(3, dim=1)
    w = torch.zeros(30, 30, dtype=x.dtype).scatter_(1, top.indices, top.values)
    assert torch.allclose(graph, (w + w.T) / 6)


@pytest.mark.parametrize("seed", [0, 1])
def test_zero_shot_solver_equals_the_dense_official_updates(seed: int) -> None:
    x, text, labels, _ = _problem(seed)
    expected, _, _ = dense_transclip(x, text)
    features = FeatureSet(x.float(), text.float(), labels)
    z = build_method("transclip").fit(features.without_labels()).target_logits.exp()
    assert torch.allclose(z.double(), expected, atol=2e-4), (z.double() - expected).abs().max()
    record = run_method(features, "transclip")
    assert record["metrics"]["acc1"] == pytest.approx(float((expected.argmax(1) == labels).double().mean()))


def test_few_shot_solver_equals_the_dense_updates_and_picks_gamma_on_validation() -> None:
    x, text, labels, _ = _problem(3, n=120)
    shots_idx, val_idx, test_idx = torch.arange(0, 8), torch.arange(8, 16), torch.arange(16, 120)
    support = FeatureSet(x[shots_idx].float(), text.float(), labels[shots_idx])
    validation = FeatureSet(x[val_idx].float(), text.float(), labels[val_idx])
    target = FeatureSet(x[test_idx].float(), text.float())
    fit = build_method("transclip-fs").fit(target, support, validation)
    # the dense reference, γ after γ without resets; validation images take their nearest query's z
    xq, xs, ys = x[test_idx], x[shots_idx], labels[shots_idx]
    z = mu = var = None
    nearest = (x[val_idx] @ xq.T).argmax(1)
    best, best_z = -1.0, None
    for gamma in (0.002, 0.01, 0.02, 0.2):
        z, mu, var = dense_transclip(xq, text, 0.5, xs, ys, gamma, z, mu, var)
        acc = float((z[nearest].argmax(1) == labels[val_idx]).float().mean())
        if acc > best:
            best, best_z, best_gamma = acc, z, gamma
    assert torch.allclose(fit.target_logits.exp().double(), best_z, atol=2e-4)
    assert fit.classifier.hparams["gamma"] == best_gamma and fit.classifier.hparams["validation_acc1"] == best


def test_shot_graph_term_sends_each_shot_label_to_its_nearest_queries() -> None:
    x, *_ = _problem(1, n=20)
    shots, shot_labels = x[:2] + 0.01, torch.tensor([1, 3])
    term = shot_graph_term(x, F.normalize(shots, dim=1), shot_labels, 4, 3, 10_000)
    sims, idx = knn(x, 3, queries=F.normalize(shots, dim=1))
    expected = torch.zeros(20, 4, dtype=x.dtype)
    for s in range(2):
        for j in range(3):
            expected[idx[s, j], shot_labels[s]] += sims[s, j] / 6
    assert torch.allclose(term, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transclip_beats_zeroshot_on_a_modality_gap_problem(seed: int) -> None:
    features = as_featureset(make_modality_gap(seed=seed))
    zeroshot = run_method(features, "zeroshot")["metrics"]["acc1"]
    record = run_method(features, "transclip")
    assert record["metrics"]["acc1"] > zeroshot
    assert record["hparams"]["gmm_weight"] == 0.02 and record["hparams"]["passes"] == 11
    assert record["hparams"]["knn_used"] == "exact"


def test_the_result_records_which_neighbour_search_ran() -> None:
    """On the CPU above exact_knn_max images the neighbours come from faiss; the result JSON says so."""
    features = as_featureset(make_modality_gap(seed=0))
    for method in ("transclip", "transclip-fs", "reclip-lp"):
        shots = 1 if method == "transclip-fs" else None
        record = run_method(features, method, hparams={"exact_knn_max": 10}, shots=shots)
        assert record["hparams"]["knn_used"].startswith("faiss-ivf(nlist="), method
        assert run_method(features, method, shots=shots)["hparams"]["knn_used"] == "exact"
    fallback = run_method(features, "reclip-lp", hparams={"max_propagation_classes": 1})  # no graph at all
    assert fallback["hparams"]["knn_used"] == "none (fallback)"


def _clustered(n: int, d: int = 32, classes: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g)
    return F.normalize(centres[torch.arange(n) % classes] + 0.6 * torch.randn(n, d, generator=g), dim=1)


def test_faiss_search_finds_most_exact_neighbours_with_exact_similarities() -> None:
    from clipadapt.kernels.graph import faiss_knn, faiss_parameters

    x = _clustered(6000)
    nlist, nprobe = faiss_parameters(len(x))
    assert nprobe < nlist, "the search is approximate at this size"
    _, idx = knn(x, 5)
    approx_sims, approx_idx = knn(x, 5, backend="faiss-ivf")
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(idx, approx_idx, strict=True)) / idx.numel()
    assert recall > 0.8
    assert torch.allclose(approx_sims, (x[:, None] * x[approx_idx]).sum(-1), atol=1e-5), "exact similarities"
    assert not (approx_idx == torch.arange(len(x))[:, None]).any(), "no self-neighbours"
    queries = _clustered(50, seed=1)
    sims, found = faiss_knn(x, 3, queries=queries)
    assert found.shape == (50, 3) and torch.allclose(sims, (queries[:, None] * x[found]).sum(-1), atol=1e-5)


def test_faiss_queries_that_find_too_few_points_get_an_exact_search(monkeypatch: pytest.MonkeyPatch) -> None:
    import clipadapt.kernels.graph as graph

    monkeypatch.setattr(graph, "FAISS_TRAIN_PER_LIST", 2)  # 80 lists of ~5 points
    monkeypatch.setattr(graph, "FAISS_NPROBE", 1)  # one list visited: often fewer than k + 1 points
    searched = []
    exact_for = graph._exact_for
    monkeypatch.setattr(graph, "_exact_for", lambda *a: searched.append(a[2]) or exact_for(*a))
    x = _clustered(400)
    sims, idx = graph.faiss_knn(x, 10)
    assert (idx >= 0).all() and not (idx == torch.arange(400)[:, None]).any()
    assert torch.allclose(sims, (x[:, None] * x[idx]).sum(-1), atol=1e-5)
    [rows] = searched
    exact_sims, exact_idx = knn(x, 10)
    assert len(rows) > 0 and torch.equal(idx[rows], exact_idx[rows])
    assert torch.allclose(sims[rows], exact_sims[rows], atol=1e-6)
    assert (sims <= exact_sims + 1e-5).all(), "the k-th found is never above the true k-th"


@pytest.mark.skipif(not whurs19_files(), reason="shared WHU-RS19 features not present")
def test_transclip_reproduces_the_published_rs_transclip_numbers() -> None:
    from clipadapt.features import load_feature_file

    for path in whurs19_files():
        acc = 100 * run_method(load_feature_file(path), "transclip")["metrics"]["acc1"]
        assert abs(acc - PUBLISHED[path.stem]) <= 0.3, (path.name, acc)
