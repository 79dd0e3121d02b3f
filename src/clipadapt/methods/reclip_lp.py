"""ReCLIP's pseudo-labeller (Hu et al., WACV 2024, arXiv:2308.03793, §3.1–3.2) as a method of its own.

Projection: U spans the class text features (SVD); P2 = U'U'ᵀ with U' = U without its first direction,
which removes what all class embeddings share; images and texts are projected and re-normalised.
Label propagation: the C text prototypes are labelled nodes and the N images unlabelled ones; a sparse
k-NN graph over all C + N nodes (affinity (cos + 1) / 2, symmetrised, D^-½ W D^-½) carries the labels by
solving (I − α W) Z = Y with conjugate gradient. With more than ``max_propagation_classes`` classes the
paper switches propagation off and uses the model's predictions (cosine in the projected space).

Efficiency (documented in the README): P2 maps into the (C−1)-dimensional span of the text features, so
the graph is built on exact (C−1)-dimensional coordinates, block by block; no N×N matrix is formed.
Departure (docs/faithfulness.md): on the CPU above ``exact_knn_max`` nodes the neighbours come from faiss's
inverted-file index (approximate; exact on a GPU at any size), and ``hparams["knn_used"]`` says which ran.
The classifier kept for new images is the normalised mean image feature of each pseudo-labelled class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError
from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels import knn_graph, propagate_labels
from clipadapt.kernels.graph import EXACT_KNN_MAX, knn_backend, knn_used
from clipadapt.methods.assumptions import small_graph_warning
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.runtime import wide_float


def text_basis(text: torch.Tensor, projection: str = "P2") -> torch.Tensor:
    """Orthonormal basis (D, r) of the projection space: P0 = identity (r = D), P1 = span of the C text
    features (r = C), P2 = that span without its first principal direction (r = C − 1). text: (C, D)."""
    if projection == "P0":
        return torch.eye(text.shape[1], dtype=text.dtype, device=text.device)
    _, _, vh = torch.linalg.svd(text.to(wide_float(text.device)), full_matrices=False)  # rows of vh: span(T)
    basis = vh.T.to(text.dtype)
    if projection == "P1":
        return basis
    if projection == "P2":
        return basis[:, 1:]
    raise ClipAdaptError(f"projection must be P0, P1 or P2, not {projection!r}")


def propagation_scores(
    x: torch.Tensor,
    text: torch.Tensor,
    k: int = 20,
    alpha: float = 0.99,
    cg_iterations: int = 20,
    projection: str = "P2",
    max_propagation_classes: int = 500,
    with_anchors: bool = False,
    exact_knn_max: int = EXACT_KNN_MAX,
) -> torch.Tensor:
    """ReCLIP's pseudo-label scores: label propagation from the class texts to the images in the P2 space.

    Args:
        x: (N, D) unit image features; text: (C, D) unit class prototypes.
        with_anchors: also return the C text nodes' own rows, first (ReCLIP-V's centroids count them).
        exact_knn_max: on the CPU, above this many nodes the graph's neighbours come from faiss
            (:func:`clipadapt.kernels.graph.knn_backend`).
    Returns:
        (N, C) propagated scores, or (C + N, C) with the anchors (cosines in the projected space above
        ``max_propagation_classes``).
    """
    basis = text_basis(text, projection)
    n_classes = text.shape[0]
    nodes = x.new_empty(n_classes + x.shape[0], basis.shape[1])  # (C + N, r) the texts, then the images
    torch.mm(text, basis, out=nodes[:n_classes])
    torch.mm(x, basis, out=nodes[n_classes:])
    nodes.div_(nodes.norm(dim=1, keepdim=True).clamp_min(1e-12))  # unit coordinates of x̂ P2, t̂ P2
    t_proj = nodes[:n_classes]
    if n_classes > max_propagation_classes:
        scores = nodes @ t_proj.T
    else:
        seeds = nodes.new_zeros(len(nodes), n_classes)
        seeds[:n_classes].fill_diagonal_(1)  # the text anchors, labelled
        graph = knn_graph(nodes, k, knn_backend(len(nodes), nodes.device, exact_knn_max))
        scores = propagate_labels(graph, seeds, alpha, cg_iterations)
    return scores if with_anchors else scores[n_classes:]


def class_centres(x: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """(C, D) normalised mean of the (N, D) features x of each class of ``labels`` (N,); a class with no
    member keeps its row of ``fallback`` (C, D), e.g. its text prototype."""
    centres = torch.zeros_like(fallback).index_add_(0, labels, x)
    empty = centres.norm(dim=1, keepdim=True) == 0
    return F.normalize(torch.where(empty, fallback, centres), dim=1)


@register_method
@dataclass
class ReCLIPLabelPropagation(Method):
    name = "reclip-lp"
    setting = "transductive"
    summary = "ReCLIP's projection + label propagation pseudo-labels (sparse k-NN graph, conjugate gradient)"
    paper = "Hu et al., ReCLIP (WACV 2024, arXiv:2308.03793): its projection and label propagation"
    code = "https://github.com/michiganleon/ReCLIP_WACV"
    faithfulness = "reclip"

    k: int = 20  # the paper's neighbour count, and the official code's (top-20 per row)
    alpha: float = 0.99
    cg_iterations: int = 20
    projection: Literal["P0", "P1", "P2"] = "P2"  # P0 / P1 / P2 (the paper's Table 3 ablation)
    max_propagation_classes: int = 500
    exact_knn_max: int = EXACT_KNN_MAX  # on the CPU, above this many nodes the neighbours come from faiss

    def assumption_warning(self, diagnostics: Mapping[str, float]) -> str | None:
        return small_graph_warning(self.name, self.k, diagnostics)

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        x, text = target.normalised()
        scores = propagation_scores(
            x, text, self.k, self.alpha, self.cg_iterations, self.projection, self.max_propagation_classes,
            exact_knn_max=self.exact_knn_max,
        )  # fmt: skip
        centroids = class_centres(x, scores.argmax(dim=1), text)
        propagated = len(text) <= self.max_propagation_classes  # else the paper's fallback builds no graph
        search = knn_used(len(x) + len(text), x.device, self.exact_knn_max) if propagated else "none (fallback)"
        hparams = {**self.hparams(), "knn_used": search}
        classifier = Classifier(centroids, target.class_names, 100.0, method=self.name, hparams=hparams)
        positive = scores.clamp_min(0)  # confidence: the top score's share of the row's positive scores
        confidence = positive.max(1).values / positive.sum(1).clamp_min(1e-12)
        history = {"mean_confidence": [float(confidence.mean())]}
        return Fit(classifier, target_logits=scores, history=history)
