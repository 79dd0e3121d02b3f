"""StatA: its updates against the official formulas written out densely, and the official whole-file numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipadapt.evaluation.runner import run_method
from clipadapt.features.featureset import FeatureSet
from clipadapt.methods import build_method
from clipadapt.methods.stata import anchor_variance, anchored_statistics, class_evidence, class_weights
from conftest import whurs19_files

# The official StatA solver on the whole of each shared WHU-RS19 file (facts sheet §9)
OFFICIAL = {
    "CLIP_RN50": 94.53, "CLIP_ViT-B-32": 90.55, "CLIP_ViT-L-14": 99.20, "GeoRSCLIP_ViT-B-32": 98.61,
    "GeoRSCLIP_ViT-L-14": 98.81, "RemoteCLIP_RN50": 98.21, "RemoteCLIP_ViT-B-32": 98.31, "RemoteCLIP_ViT-L-14": 97.41,
}  # fmt: skip


def dense_stata(x: torch.Tensor, text: torch.Tensor, alpha: float = 1.0, k: int = 3) -> torch.Tensor:
    """The official solver (facts sheet §9) written out densely, one formula per line, in float64."""
    n, _ = x.shape
    c = text.shape[0]
    y_hat = torch.softmax(100 * x @ text.T, dim=1)
    z = y_hat.clone()
    sims = x @ x.T
    sims.fill_diagonal_(-float("inf"))
    top = sims.topk(k, dim=1)
    w = torch.zeros(n, n, dtype=x.dtype).scatter_(1, top.indices, top.values)
    mu = text.clone()
    anchor = (z[:, :, None] * (x[:, None, :] - text[None]) ** 2).sum((0, 1)) / n  # (D,)
    var = anchor[None].repeat(c, 1)
    for step in range(11):
        ll = -0.5 * ((x[:, None, :] - mu[None]) ** 2 / var[None]).sum(-1)  # (N, C)
        for _ in range(5):
            a = ll + 50 / (2 * k) * (w.T @ z + w @ z) - 0.5 * var.log().sum(1)[None]
            a = a - a.max(1, keepdim=True).values
            z = y_hat * torch.exp(a / 50)
            z = z / z.sum(1, keepdim=True)
        if step == 10:
            break
        counts = torch.bincount(z.argmax(1), minlength=c).double()
        beta = counts / (alpha + counts)
        mu = (z.T @ x) / z.sum(0)[:, None]
        mu = mu / mu.norm(dim=1, keepdim=True)
        mu = beta[:, None] * mu + (1 - beta[:, None]) * text
        mu = mu / mu.norm(dim=1, keepdim=True)
        var = (z[:, :, None] * (x[:, None, :] - mu[None]) ** 2).sum(0) / z.sum(0)[:, None]
        var = beta[:, None] * var + (1 - beta[:, None]) * (anchor[None] + (text - mu) ** 2)
    return z


def _problem(seed: int, n: int = 80, c: int = 5, d: int = 10, present: int | None = None):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(c, d, generator=g, dtype=torch.float64), dim=1)
    labels = torch.arange(n) % (present or c)
    x = F.normalize(centres[labels] + 0.4 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    text = F.normalize(centres + 0.5 * torch.randn(c, d, generator=g, dtype=torch.float64), dim=1)
    return x, text, labels


def test_the_expanded_terms_equal_the_direct_formulas() -> None:
    x, text, _ = _problem(0)
    g = torch.Generator().manual_seed(1)
    z = torch.softmax(torch.randn(80, 5, generator=g, dtype=torch.float64), 1)
    means = F.normalize(torch.randn(5, 10, generator=g, dtype=torch.float64), dim=1)
    var = torch.rand(5, 10, generator=g, dtype=torch.float64) + 0.05
    direct = -0.5 * ((x[:, None] - means[None]) ** 2 / var[None]).sum(-1) - 0.5 * var.log().sum(1)
    text_weights = 100 * text
    expected = direct / 50 + 100 * x @ text.T
    got = class_evidence(x, means, var, 1 / 50, text_weights, block=7)  # blocks of rows: same result
    shift = expected - got  # a per-image constant only
    assert torch.allclose(shift, shift[:, :1].expand_as(shift))
    anchor = (z[:, :, None] * (x[:, None] - text[None]) ** 2).sum((0, 1)) / 80
    assert torch.allclose(anchor_variance(x, z, text), anchor)
    beta = class_weights(z, 1.0)
    counts = torch.bincount(z.argmax(1), minlength=5).double()
    assert torch.allclose(beta, counts / (1 + counts))
    mu, sigma = anchored_statistics(x, z, beta, text, anchor)
    plain = F.normalize(z.T @ x / z.sum(0)[:, None], dim=1)
    want_mu = F.normalize(beta[:, None] * plain + (1 - beta[:, None]) * text, dim=1)
    spread = (z[:, :, None] * (x[:, None] - want_mu[None]) ** 2).sum(0) / z.sum(0)[:, None]
    want_sigma = beta[:, None] * spread + (1 - beta[:, None]) * (anchor + (text - want_mu) ** 2)
    assert torch.allclose(mu, want_mu) and torch.allclose(sigma, want_sigma)


def test_a_class_no_image_takes_keeps_its_text_statistics() -> None:
    x, text, _ = _problem(2)
    z = torch.zeros(80, 5, dtype=torch.float64)
    z[:, :4] = torch.softmax(torch.randn(80, 4, dtype=torch.float64), 1)  # class 4: no mass at all
    beta = class_weights(z, 1.0)
    anchor = anchor_variance(x, z, text)
    mu, sigma = anchored_statistics(x, z, beta, text, anchor)
    assert beta[4] == 0 and torch.allclose(mu[4], text[4]) and torch.allclose(sigma[4], anchor)
    assert torch.isfinite(mu).all() and torch.isfinite(sigma).all()


@pytest.mark.parametrize(("seed", "present"), [(0, None), (1, 2)])
def test_the_solver_equals_the_dense_official_updates(seed: int, present: int | None) -> None:
    x, text, labels = _problem(seed, present=present)
    expected = dense_stata(x, text)
    features = FeatureSet(x.float(), text.float(), labels)
    fit = build_method("stata").fit(features.without_labels())
    assert torch.allclose(fit.target_logits.exp().double(), expected, atol=2e-4)
    assert fit.classifier.hparams["knn_used"] == "exact"
    record = run_method(features, "stata")
    assert record["metrics"]["acc1"] == pytest.approx(float((expected.argmax(1) == labels).double().mean()))


@pytest.mark.skipif(not whurs19_files(), reason="shared WHU-RS19 features not present")
def test_stata_reproduces_the_official_whole_file_numbers() -> None:
    from clipadapt.features import load_feature_file

    for path in whurs19_files():
        acc = 100 * run_method(load_feature_file(path), "stata")["metrics"]["acc1"]
        assert abs(acc - OFFICIAL[path.stem]) <= 0.3, (path.name, acc)
