"""TransCLIP (Zanella, Gérin & Ben Ayed, NeurIPS 2024, arXiv 2406.01837): ``transclip`` (zero-shot) and
``transclip-fs`` (few-shot), as the official solver computes them.

Where the paper's printed updates leave a choice, this module does what the official solver does
(``MaxZanella/transduction-for-vlms``, whose solver ``elkhouryk/RS-TransCLIP`` repeats unchanged). Over
the N query images with unit features x_i, zero-shot predictions ŷ_i = softmax(100 x_i t̂ᵀ), class means
μ_k and one shared diagonal variance σ²:

    z_ik ∝ ŷ_ik^λ · exp( ℓ_ik / 50  +  (1/(2k)) [(W z)_ik + (Wᵀ z)_ik] ),   ℓ_ik = −½ Σ_d (x_id − μ_kd)² / σ²_d

(5 decoupled sweeps per z-update, z updated in place), with W the sparse affinity holding the *raw cosine*
x_iᵀx_j of the k = 3 nearest neighbours j of each i (no binarisation, no normalisation), then

    μ_k ← normalise( Σ_i z_ik x_i / Σ_i z_ik ),    σ²_d ← Σ_ik z_ik (x_id − μ_kd)² / Σ_ik z_ik   (new μ).

Initialisation: z = ŷ; μ_k = normalise((1/8) Σ z_ik x_i over the 8 images of largest z_ik); σ² = 1/d.
Schedule: 11 z-updates with a μ/σ² update between consecutive ones (10), so the last step is a z-update.
λ = 1. Prediction: argmax z. There is no log-determinant term (σ² is shared by the classes).

``transclip-fs`` (few-shot, λ = 0.5): the K labelled shots per class join the Gaussian terms with weight
γ·50/|S| against 1/|Q| for the queries (numerators and denominators of μ and σ²), μ starts at the
normalised sum of each class's shots, and the shots (one-hot, fixed) are nodes of the graph with their 3
nearest queries. γ runs over {0.002, 0.01, 0.02, 0.2} *without resetting* z, μ, σ² between values; after each
γ's last z-update, every validation image takes the z of its nearest query image, and the γ of the best
validation top-1 (the first on ties) gives the prediction. Validation rows only: test labels are never read.

Departure from the official code (docs/faithfulness.md): in few-shot the official ``update_z`` stacks W's
rows as [shots; queries] but z as [queries; shots], so Wz and Wᵀz pair rows of different images. Here the
graph term is the objective's: a query's own neighbours, plus every node (query or shot) that has the
query among its neighbours, (1/(2k))·[W_QQ z_Q + W_QQᵀ z_Q + W_SQᵀ Y_S]. The zero-shot solver has no shots
and no such mismatch: there it is the official one. ŷ^λ is applied in the log domain (λ log ŷ), which
equals the official product except where ŷ underflows to 0 in float32.

Efficiency: no N×N matrix. W is a sparse k-NN graph (:func:`clipadapt.kernels.knn`: exact and blockwise
on a GPU at any size and on the CPU up to ``exact_knn_max`` images, faiss's inverted-file index above on
the CPU; ``knn_used`` in the result's hparams says which, with faiss's parameters), (W + Wᵀ)/(2k) is one
CSR matrix, and the Gaussian terms are expanded so that no (N, C, D) tensor is formed. The text term λ log ŷ
joins them in the same matrix product (its per-image normaliser cancels in the softmax), so the zero-shot
solver holds three (N, C) buffers, z and two it reuses, and the graph is built before any of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError
from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels import knn, to_csr
from clipadapt.kernels.graph import EXACT_KNN_MAX, knn_backend, knn_used
from clipadapt.methods.assumptions import few_classes_warning
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.supervised import require_labelled

GMM_TEMPERATURE = 50.0  # the official solver divides ℓ by 50 (and the shots' weight carries 50 · γ)


def fixed_part(
    x: torch.Tensor,
    means: torch.Tensor,
    variance: torch.Tensor,
    scale: float = 1.0,
    text_weights: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``scale`` × ℓ_ik (+ λ log ŷ_ik), up to per-image constants, as one fused matrix product.

    ℓ_ik = −½ Σ_d (x_id − μ_kd)²/σ²_d = x_i·(μ_k/σ²) − ½ Σ μ_k²/σ² − ½ Σ_d x_id²/σ²_d, and
    λ log ŷ_ik = x_i·(100λ t̂_k) − λ log Σ_j exp(100 x_i·t̂_j); the last term of each is the same for every
    class and cancels in the z-update's softmax, so the rest is x (scale·μ/σ² + 100λ t̂)ᵀ + bias: no (N, C, D)
    tensor, and no (N, C) buffer for the text term.

    Args:
        x: (N, D); means: (C, D); variance: (D,); text_weights: optional (C, D) 100λ t̂;
        out: optional (N, C) buffer to write into.
    Returns:
        (N, C).
    """
    scaled = means / variance  # (C, D)
    bias = -0.5 * (means * scaled).sum(1)  # (C,)
    weights = scaled.mul_(scale) if text_weights is None else scaled.mul_(scale).add_(text_weights)
    return torch.addmm(bias[None, :] * scale, x, weights.T, out=out)


def zeroshot_start(x: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The starting assignments ŷ = softmax(100 x t̂ᵀ) and the zero-shot predictions.

    Args:
        x: (N, D) unit features; text: (C, D) unit prototypes.
    Returns:
        (N, C) ŷ and (N,) argmax.
    """
    logits = torch.mm(x, text.T).mul_(100.0)
    return torch.softmax(logits, dim=1), logits.argmax(1)


def initial_means(x: torch.Tensor, z: torch.Tensor, top: int = 8) -> torch.Tensor:
    """Official zero-shot μ init: normalise((1/top) Σ z_ik x_i over the ``top`` images of largest z_ik).

    Args:
        x: (N, D) features; z: (N, C) initial assignments.
    Returns:
        (C, D) unit means.
    """
    top = min(top, x.shape[0])
    idx = z.topk(top, dim=0).indices  # (top, C)
    weights = z.gather(0, idx)  # (top, C)
    return F.normalize(torch.einsum("tc,tcd->cd", weights, x[idx]) / top, dim=1)


def shot_means(shots: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Official few-shot μ init: the normalised sum of each class's shots. (S, D), (S,) → (C, D)."""
    return F.normalize(shots.new_zeros(num_classes, shots.shape[1]).index_add_(0, labels, shots), dim=1)


def weighted_squares(weights: torch.Tensor, f: torch.Tensor, block: int = 65536) -> torch.Tensor:
    """Σ_i w_i f_i² over row blocks, so that no (N, D) temporary is formed. (N,), (N, D) → (D,)."""
    return sum(w @ (rows * rows) for w, rows in zip(weights.split(block), f.split(block), strict=True))


def update_gaussians(
    x: torch.Tensor, z: torch.Tensor, shots: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form μ (normalised) and shared diagonal σ² from responsibilities.

    μ_k = normalise(Σ_i r_ik x_i / Σ_i r_ik), σ²_d = Σ_ik r_ik (x_id − μ_kd)² / Σ_ik r_ik with the new μ,
    summed over the queries (r = z) and, when given, the shots (r = their weighted one-hot rows).

    Args:
        x: (N, D) query features; z: (N, C) assignments;
        shots: optional ((S, D) shot features, (S, C) their responsibilities).
    Returns:
        (C, D) unit means and (D,) variance.
    """
    parts = [(x, z)] if shots is None else [(x, z), shots]
    mass = sum(r.sum(0) for _, r in parts)  # (C,)
    weighted = sum(r.T @ f for f, r in parts)  # (C, D)
    squares = sum(weighted_squares(r.sum(1), f) for f, r in parts)  # (D,) Σ_i (Σ_k r_ik) x_i²
    total = sum(r.sum() for _, r in parts)
    means = F.normalize(weighted / mass.clamp_min(1e-12)[:, None], dim=1)
    # Σ_ik r_ik (x_i − μ_k)² = Σ_i (Σ_k r_ik) x_i² − 2 Σ_k μ_k ⊙ (rᵀx)_k + Σ_k mass_k μ_k²
    spread = squares - 2 * (means * weighted).sum(0) + (mass[:, None] * means * means).sum(0)
    return means, (spread / total).clamp_min(1e-12)


def update_assignments(
    fixed: torch.Tensor, graph: torch.Tensor, z: torch.Tensor, iterations: int, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """The z-update: z ← softmax(fixed + graph z), ``iterations`` times, in place on ``z``.

    Both (N, C) products are written into existing buffers: allocating fresh 50 000 × 1000 tensors every
    sweep costs more (page faults) than the arithmetic.

    Args:
        fixed: (N, C) λ log ŷ + ℓ/50 (+ the shots' graph term), up to per-image constants;
        graph: (N, N) sparse CSR (W + Wᵀ)/(2k); z: (N, C) current assignments, overwritten;
        scratch: optional (N, C) buffer.
    Returns:
        ``z``, updated.
    """
    scratch = torch.empty_like(z) if scratch is None else scratch
    for _ in range(iterations):
        torch.addmm(fixed, graph, z, out=scratch)  # graph in CSR: sparse × dense, fused add
        torch.softmax(scratch, dim=1, out=z)
    return z


def _search(x: torch.Tensor, k: int, exact_max: int, queries: torch.Tensor | None = None):
    return knn(x, k, queries=queries, backend=knn_backend(x.shape[0], x.device, exact_max))


def neighbour_graph(x: torch.Tensor, k: int, exact_max: int) -> torch.Tensor:
    """Sparse CSR (N, N) (W + Wᵀ)/(2k), W_ij = x_iᵀx_j for the k nearest neighbours j of each i (raw cosines)."""
    n = x.shape[0]
    sims, idx = _search(x, k, exact_max)
    rows = torch.arange(n, device=x.device).repeat_interleave(idx.shape[1])
    cols, values = idx.reshape(-1), sims.reshape(-1) / (2 * k)
    both = torch.sparse_coo_tensor(
        torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])]), torch.cat([values, values]), (n, n),
        check_invariants=False,
    )  # fmt: skip
    return to_csr(both.coalesce())


def shot_graph_term(x: torch.Tensor, shots: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int,
                    exact_max: int) -> torch.Tensor:  # fmt: skip
    """(1/(2k)) W_SQᵀ Y_S: what the fixed one-hot shots send, through their k nearest queries, to each query.

    Args:
        x: (N, D) queries; shots: (S, D); labels: (S,).
    Returns:
        (N, C).
    """
    sims, idx = _search(x, k, exact_max, queries=shots)  # (S, k) each shot's nearest queries
    out = x.new_zeros(x.shape[0], num_classes)
    flat_cols = idx.reshape(-1) * num_classes + labels.repeat_interleave(idx.shape[1])
    return out.view(-1).index_add_(0, flat_cols, sims.reshape(-1) / (2 * k)).view_as(out)


@torch.no_grad()
def solve(
    x: torch.Tensor,
    text_weights: torch.Tensor,
    graph: torch.Tensor,
    z: torch.Tensor,
    means: torch.Tensor,
    variance: torch.Tensor,
    passes: int = 11,
    z_iterations: int = 5,
    gmm_weight: float = 1 / GMM_TEMPERATURE,
    prior: torch.Tensor | None = None,
    shots: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The official schedule: ``passes`` z-updates, with a μ/σ² update between consecutive ones.

    Args:
        x: (N, D) unit features; text_weights: (C, D) 100λ t̂, the text term λ log ŷ as a linear map
        (:func:`fixed_part`); graph: (N, N) CSR (W + Wᵀ)/(2k); z: (N, C) assignments (updated in place);
        means: (C, D); variance: (D,); prior: optional (N, C) further fixed term (the shots' graph term);
        shots: optional ((S, D) features, (S, C) weighted one-hot responsibilities).
    Returns:
        z, means, variance, and the (N,) argmax of z after every z-update.
    """
    fixed, scratch = torch.empty_like(z), torch.empty_like(z)  # reused (N, C) buffers
    predictions = []
    for step in range(passes):
        fixed_part(x, means, variance, gmm_weight, text_weights, out=fixed)
        if prior is not None:
            fixed.add_(prior)
        update_assignments(fixed, graph, z, z_iterations, scratch)
        predictions.append(z.argmax(1))
        if step < passes - 1:
            means, variance = update_gaussians(x, z, shots)
    return z, means, variance, predictions


@register_method
@dataclass
class TransCLIPZeroShot(Method):
    name = "transclip"
    setting = "transductive"
    summary = "TransCLIP-ZS: Gaussian mixture + kNN Laplacian + KL to zero-shot, the official solver (baseline)"
    paper = "Zanella et al., Boosting Vision-Language Models with Transduction (NeurIPS 2024, arXiv:2406.01837)"
    code = "https://github.com/MaxZanella/transduction-for-vlms"
    faithfulness = "transclip"

    text_weight: float = 1.0  # λ
    gmm_weight: float = 1 / GMM_TEMPERATURE  # ℓ is divided by 50
    neighbours: int = 3
    passes: int = 11  # z-updates; a μ/σ² update between consecutive ones
    z_iterations: int = 5
    init_top: int = 8  # μ_k starts from the init_top images of largest z_ik
    exact_knn_max: int = EXACT_KNN_MAX  # on the CPU, above this many images the neighbours come from faiss

    def assumption_warning(self, diagnostics: Mapping[str, float]) -> str | None:
        return few_classes_warning(
            "TransCLIP", "gives every class a mixture component that pulls images to it", diagnostics
        )

    @torch.no_grad()
    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        # the graph before the (N, C) buffers exist
        return self.fit_on_graph(target, neighbour_graph(target.normalised()[0], self.neighbours, self.exact_knn_max))

    @torch.no_grad()
    def fit_on_graph(self, target: FeatureSet, graph: torch.Tensor) -> Fit:
        """:meth:`fit` with the images' (N, N) sparse k-NN graph (:func:`neighbour_graph`) already built."""
        x, text = target.normalised()
        z, zeroshot = zeroshot_start(x, text)
        means, variance = initial_means(x, z, self.init_top), x.new_full((x.shape[1],), 1.0 / x.shape[1])
        z, means, _, predictions = solve(
            x, 100.0 * self.text_weight * text, graph, z, means, variance, self.passes, self.z_iterations,
            self.gmm_weight,
        )  # fmt: skip
        return self._fit(target, z, means, zeroshot, predictions)

    def _fit(self, target: FeatureSet, z: torch.Tensor, means: torch.Tensor, zeroshot: torch.Tensor,
             predictions: list[torch.Tensor], extra: dict | None = None) -> Fit:  # fmt: skip
        # New images (inductive use): the class means as cosine prototypes.
        used = {"knn_used": knn_used(len(target), target.device, self.exact_knn_max)}
        classifier = Classifier(
            means, target.class_names, 100.0, method=self.name, hparams={**self.hparams(), **used, **(extra or {})}
        )
        history = {"agreement_with_zeroshot": [float((p == zeroshot).float().mean()) for p in predictions]}
        return Fit(classifier, target_logits=z.clamp_min_(1e-30).log_(), history=history)  # z's buffer: log z


@register_method
@dataclass
class TransCLIPFewShot(TransCLIPZeroShot):
    name = "transclip-fs"
    setting = "few-shot"
    label_free = False
    summary = "TransCLIP-FS: the shots join the Gaussian mixture and the graph, γ chosen on validation"
    paper = "Zanella et al., Boosting Vision-Language Models with Transduction (NeurIPS 2024, arXiv:2406.01837)"
    code = "https://github.com/MaxZanella/transduction-for-vlms"
    faithfulness = "transclip"

    text_weight: float = 0.5  # λ in few-shot
    gammas: str = "0.002,0.01,0.02,0.2"  # weight of the shots, searched in this order without resets

    @torch.no_grad()
    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        require_labelled(self.name, support, validation)
        assert support is not None and validation is not None and support.labels is not None
        assert validation.labels is not None
        try:
            gammas = [float(g) for g in self.gammas.split(",")]
        except ValueError:
            raise ClipAdaptError(f"transclip-fs: gammas must be comma-separated numbers, not {self.gammas!r}") from None
        x, text = target.normalised()
        shots, labels = support.normalised()[0], support.labels  # one un-augmented view per shot
        num_classes = text.shape[0]
        graph = neighbour_graph(x, self.neighbours, self.exact_knn_max)
        z, zeroshot = zeroshot_start(x, text)
        prior = shot_graph_term(x, shots, labels, num_classes, self.neighbours, self.exact_knn_max)
        means, variance = shot_means(shots, labels, num_classes), x.new_full((x.shape[1],), 1.0 / x.shape[1])
        nearest_query = _search(x, 1, self.exact_knn_max, queries=validation.normalised()[0])[1][:, 0]
        one_hot = F.one_hot(labels, num_classes).float()
        best: tuple[float, float, torch.Tensor, torch.Tensor, list] | None = None
        validation_acc = []
        for gamma in gammas:  # z, μ and σ² carry over from one γ to the next, as in the official solver
            # the official weights: γ·50/|S| per shot against 1/|Q| per query; here both times |Q|
            weight = gamma * GMM_TEMPERATURE * x.shape[0] / shots.shape[0]
            z, means, variance, predictions = solve(
                x, 100.0 * self.text_weight * text, graph, z, means, variance, self.passes, self.z_iterations,
                self.gmm_weight, prior=prior, shots=(shots, weight * one_hot),
            )  # fmt: skip
            acc = float((z[nearest_query].argmax(1) == validation.labels).float().mean())
            validation_acc.append(acc)
            if best is None or acc > best[1]:
                best = (gamma, acc, z.clone(), means.clone(), predictions)
        assert best is not None
        gamma, acc, z, means, predictions = best
        fit = self._fit(target, z, means, zeroshot, predictions, {"gamma": gamma, "validation_acc1": acc})
        fit.history["validation_acc1_per_gamma"] = validation_acc
        return fit
