"""StatA (Zanella, Fuchs, De Vleeschouwer & Ben Ayed, "Realistic Test-Time Adaptation of Vision-Language
Models", CVPR 2025, arXiv 2501.03729): ``stata``, as the official solver computes it.

TransCLIP's transductive model (a Gaussian mixture over the images, a k-NN graph term and a pull towards
zero-shot CLIP, :mod:`clipadapt.methods.transclip`) with **class statistics anchored to the text**, so that
the classes a batch does not hold keep the statistics their text gives them instead of taking images.
Over N unit image features x_i and C unit class prototypes t̂_c, ŷ = softmax(100 x t̂ᵀ):

    z_ic ∝ ŷ_ic^λ · exp( (ℓ_ic − ½ Σ_d log σ²_cd) / 50  +  (λ_lap/(2k)) [(W z)_ic + (Wᵀ z)_ic] ),
    ℓ_ic = −½ Σ_d (x_id − μ_cd)² / σ²_cd

(5 sweeps per z-update), W holding the raw cosine of each image's k = 3 nearest neighbours (itself
excluded). Between consecutive z-updates (10 rounds; 11 z-updates in all; prediction argmax z):

    β_c = n_c / (α + n_c)             n_c = images whose argmax z is c (α = 1; soft_beta: n_c = Σ_i z_ic)
    μ_c ← normalise(Σ_i z_ic x_i / Σ_i z_ic),  then  μ_c ← normalise(β_c μ_c + (1 − β_c) t̂_c)
    σ²_c ← Σ_i z_ic (x_i − μ_c)² / Σ_i z_ic,   then  σ²_c ← β_c σ²_c + (1 − β_c)(σ²⁰ + (t̂_c − μ_c)²)

with z starting at ŷ, μ at t̂ and every σ²_c at the anchor σ²⁰ = (1/N) Σ_i Σ_c ŷ_ic (x_i − t̂_c)². A class
that no image is assigned to (β_c = 0) keeps exactly its text statistics. Fixed everywhere, as in the
paper: α = 1, λ = 1, λ_lap = 1, k = 3.

Source: the official solver, ``MaxZanella/StatA@eea8637:solvers/StatA.py``.
Departures (each a row of docs/faithfulness.md):

- σ²⁰ is the mean over all N images, as the paper writes it. The official ``init_cov`` divides by N
  inside its 2,500-row chunk loop, which is the same at N ≤ 2,500 and wrong above it.
- The graph is a sparse k-NN graph (:func:`clipadapt.kernels.knn`: exact, or faiss's inverted-file index
  on the CPU above ``exact_knn_max`` images; ``knn_used`` records which). The official code builds the
  dense N × N similarity.
- Class masses are floored at 1e-12 before dividing. This only avoids 0/0 when every z_ic of a class
  underflows; the official code would then give NaN, and the floor leaves t̂_c and σ²⁰ to such a class.

Efficiency: no (N, C, D) tensor. The Gaussian terms are expanded into two (N, D) × (D, C) matrix
products (x and x², the latter over row blocks), and the text term λ log ŷ joins the first (its
per-image normaliser cancels in the softmax).

New images (the saved classifier) are classified by cosine to the adapted means μ at scale 100, as for
TransCLIP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels.graph import EXACT_KNN_MAX, knn_used
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.transclip import GMM_TEMPERATURE, neighbour_graph, update_assignments, zeroshot_start

ROW_BLOCK = 65536  # rows of x² formed at a time


def class_squares(weights: torch.Tensor, x: torch.Tensor, block: int = ROW_BLOCK) -> torch.Tensor:
    """Σ_i w_ic x_id² for every class, over row blocks (no (N, D) temporary). (N, C), (N, D) → (C, D)."""
    return sum(w.T @ (rows * rows) for w, rows in zip(weights.split(block), x.split(block), strict=True))


def anchor_variance(x: torch.Tensor, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """σ²⁰ = (1/N) Σ_i Σ_c z_ic (x_i − t̂_c)², the paper's mean over every image. (N, D), (N, C), (C, D) → (D,)."""
    mass, weighted = z.sum(0), z.T @ x  # (C,), (C, D)
    spread = class_squares(z, x).sum(0) - 2 * (text * weighted).sum(0) + (mass[:, None] * text * text).sum(0)
    return spread / x.shape[0]


def class_evidence(
    x: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    scale: float,
    text_weights: torch.Tensor,
    out: torch.Tensor | None = None,
    block: int = ROW_BLOCK,
) -> torch.Tensor:
    """scale · (ℓ_ic − ½ Σ_d log σ²_cd) + λ log ŷ_ic, up to per-image constants.

    ℓ_ic = −½ x_i²·(1/σ²_c) + x_i·(μ_c/σ²_c) − ½ Σ_d μ²_cd/σ²_cd, and λ log ŷ_ic = x_i·(100λ t̂_c) − (a
    per-image constant), so the result is x Aᵀ − ½ scale · x² (1/σ²)ᵀ + b: two matrix products.

    Args:
        x: (N, D); means: (C, D); variances: (C, D) per-class diagonals; text_weights: (C, D) 100λ t̂;
        out: optional (N, C) buffer.
    Returns:
        (N, C).
    """
    precision = variances.reciprocal()  # (C, D)
    scaled = means * precision
    bias = -0.5 * ((means * scaled).sum(1) + variances.log().sum(1))  # (C,)
    out = torch.addmm(bias[None, :] * scale, x, (scaled.mul_(scale).add_(text_weights)).T, out=out)
    for start in range(0, x.shape[0], block):
        rows = x[start : start + block]
        out[start : start + block].addmm_(rows * rows, precision.T, alpha=-0.5 * scale)
    return out


def class_weights(z: torch.Tensor, alpha: float, soft: bool = False) -> torch.Tensor:
    """β_c = n_c / (α + n_c): n_c the images whose argmax z is c, or Σ_i z_ic when ``soft``. (N, C) → (C,)."""
    counts = z.sum(0) if soft else torch.bincount(z.argmax(1), minlength=z.shape[1]).to(z.dtype)
    return counts / (alpha + counts)


def anchored_statistics(
    x: torch.Tensor, z: torch.Tensor, beta: torch.Tensor, text: torch.Tensor, anchor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """StatA's μ and Σ updates: the images' statistics, pulled towards the text's by 1 − β.

    Args:
        x: (N, D) unit features; z: (N, C); beta: (C,); text: (C, D) unit prototypes; anchor: (D,) σ²⁰.
    Returns:
        (C, D) unit means and (C, D) diagonal variances.
    """
    mass = z.sum(0).clamp_min(1e-12)[:, None]  # (C, 1)
    weighted = z.T @ x  # (C, D)
    means = F.normalize(weighted / mass, dim=1)
    b = beta[:, None]
    means = F.normalize(b * means + (1 - b) * text, dim=1)
    # Σ_i z_ic (x_i − μ_c)² = Σ_i z_ic x_i² − 2 μ_c ⊙ (zᵀx)_c + mass_c μ_c²
    spread = (class_squares(z, x) - 2 * means * weighted + mass * means * means) / mass
    variances = b * spread + (1 - b) * (anchor[None, :] + (text - means) ** 2)
    return means, variances


@torch.no_grad()
def solve(
    x: torch.Tensor,
    text: torch.Tensor,
    graph: torch.Tensor,
    alpha: float = 1.0,
    soft_beta: bool = False,
    text_weight: float = 1.0,
    passes: int = 11,
    z_iterations: int = 5,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """StatA's schedule: ``passes`` z-updates with a β/μ/Σ update between consecutive ones.

    Args:
        x: (N, D) unit features; text: (C, D) unit prototypes; graph: (N, N) sparse CSR λ_lap (W + Wᵀ)/(2k).
    Returns:
        z (N, C), the means (C, D), the (N,) argmax of z after every z-update, and the last β (C,).
    """
    z, _ = zeroshot_start(x, text)
    means, anchor = text.clone(), anchor_variance(x, z, text)
    variances = anchor[None, :].repeat(text.shape[0], 1)
    text_weights = 100.0 * text_weight * text
    fixed, scratch = torch.empty_like(z), torch.empty_like(z)
    beta = torch.zeros(text.shape[0], dtype=x.dtype, device=x.device)
    predictions = []
    for step in range(passes):
        class_evidence(x, means, variances, 1 / GMM_TEMPERATURE, text_weights, out=fixed)
        update_assignments(fixed, graph, z, z_iterations, scratch)
        predictions.append(z.argmax(1))
        if step < passes - 1:
            beta = class_weights(z, alpha, soft_beta)
            means, variances = anchored_statistics(x, z, beta, text, anchor)
    return z, means, predictions, beta


@register_method
@dataclass
class StatA(Method):
    name = "stata"
    setting = "transductive"
    summary = "StatA: TransCLIP's model with class statistics anchored to the text, robust when few classes are present"
    paper = "Zanella et al., Realistic Test-Time Adaptation of Vision-Language Models (CVPR 2025, arXiv:2501.03729)"
    code = "https://github.com/MaxZanella/StatA"
    faithfulness = "stata"

    alpha: float = 1.0  # β_c = n_c / (α + n_c)
    soft_beta: bool = False  # n_c as Σ_i z_ic instead of hard counts
    text_weight: float = 1.0  # λ
    laplacian_weight: float = 1.0  # λ_lap
    neighbours: int = 3
    passes: int = 11
    z_iterations: int = 5
    exact_knn_max: int = EXACT_KNN_MAX  # on the CPU, above this many images the neighbours come from faiss

    @torch.no_grad()
    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        return self.fit_on_graph(target, neighbour_graph(target.normalised()[0], self.neighbours, self.exact_knn_max))

    @torch.no_grad()
    def fit_on_graph(self, target: FeatureSet, graph: torch.Tensor) -> Fit:
        """:meth:`fit` with the images' (N, N) sparse k-NN graph (:func:`neighbour_graph`) already built."""
        x, text = target.normalised()
        if self.laplacian_weight != 1.0:
            graph = graph * self.laplacian_weight
        zeroshot = torch.mm(x, text.T).argmax(1)
        z, means, predictions, beta = solve(
            x, text, graph, self.alpha, self.soft_beta, self.text_weight, self.passes, self.z_iterations
        )
        used = {"knn_used": knn_used(len(target), target.device, self.exact_knn_max),
                "classes_kept": int((beta > 0).sum())}  # fmt: skip
        classifier = Classifier(means, target.class_names, 100.0, method=self.name, hparams={**self.hparams(), **used})
        history = {"agreement_with_zeroshot": [float((p == zeroshot).float().mean()) for p in predictions]}
        return Fit(classifier, target_logits=z.clamp_min_(1e-30).log_(), history=history)
