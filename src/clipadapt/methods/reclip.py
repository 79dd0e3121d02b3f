"""ReCLIP: cross-modality self-training of the LayerNorms of both encoders (``shared/papers/reclip.txt`` §3.3).

Every epoch starts with the pseudo-labels of both sides (no gradients), from the label propagation of
:mod:`clipadapt.methods.reclip_lp`:

- **ReCLIP-V** (vision LayerNorms tuned, text frozen): the target images encoded by the tuned vision tower,
  projected by P2 of the frozen class texts t₀, propagated from t₀ → ỹ_V;
- **ReCLIP-T** (text LayerNorms tuned, vision frozen): the untuned image features v₀ (from the feature
  store, never re-encoded), projected by P2 of the tuned class texts t_T, propagated from t_T → ỹ_T.

With label sharing only the images where ỹ_V = ỹ_T train the epoch (without it, each side trains on its
own labels). Per batch of those images, with scale 100 (CLIP's):

    Loss^V = CE(100 · cos(P v_V, ŵ), ỹ)    ŵ: class centres of the agreed pseudo-labels in the P space
    Loss^T = CE(100 · cos(P_T v₀, P_T t_T), ỹ)

summed and minimised by SGD (lr 1e-3, momentum 0.9, weight decay 1e-4) on the LayerNorm affine parameters
of both towers, for min(50 epochs, 5000 iterations), batch 64. Inference adds both sides' prediction
logits as §3.3 defines them, 100 · cos(P v_V, ŵ) + 100 · cos(P_T v₀, P_T t_T), with the last epoch's ŵ.
(Reading §4.1's "inference is similar to CLIP" as cos(P v_V, P t₀) for the V side instead was also
scored once on the demo domains: lower on three of four; the §3.3 reading is kept. The public code's
unprojected logits with a first-template ReCLIP-T were run once on a second world sample, seed 1: night
45.8 vs 46.8, noisy 66.8 vs 58.4, pseudo-labels falling either way; not adopted, see the README.)
The reported model is the last epoch's; the pseudo-labels of every epoch are kept in the history for
plots (the runner scores them only when labels exist).

One backbone serves both sides: ReCLIP-V changes only vision LayerNorms and ReCLIP-T only text LayerNorms,
so the two "models" of the paper are one model whose untuned vision features v₀ are cached.

Deviations (documented in the README): P_T is recomputed from t_T at every step without a gradient
through the SVD (ReCLIP-T "updates the projection matrix"; differentiating an SVD is unstable when
singular values come close). The class texts are the prompt ensemble of the run's templates (or class
descriptions), encoded in full at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from clipadapt.backbones.base import Backbone
from clipadapt.features.featureset import FeatureSet
from clipadapt.features.images import EncoderInputs
from clipadapt.methods.base import Fit, Method
from clipadapt.methods.encoder import (
    TunedClassifier,
    class_text_features,
    encode_rows,
    layernorm_names,
    layernorm_state,
    require_encoder,
    tuned,
    tuning,
)
from clipadapt.methods.reclip_lp import class_centres, projected, propagation_scores, text_basis
from clipadapt.methods.registry import register_method
from clipadapt.progress import progress
from clipadapt.runtime import autocast


def shared_labels(vision: torch.Tensor, text: torch.Tensor, sharing: bool = True) -> torch.Tensor:
    """Indices of the images that train the next epoch: where both sides' (N,) pseudo-labels agree
    (label sharing), or every image (without it)."""
    return (vision == text).nonzero().squeeze(1) if sharing else torch.arange(len(vision))


@dataclass
class ReCLIPClassifier(TunedClassifier):
    """Sum of the prediction logits of both sides as §3.3 defines them: Ŷ^V, tuned vision features vs the
    class centres (P space of t₀), and Ŷ^T, untuned vision features vs the tuned class texts (P space of
    t_T). ``weights`` are the tuned texts t_T."""

    vision_basis: torch.Tensor | None = None  # (D, r) P of t₀
    centres: torch.Tensor | None = None  # (C, r) the last epoch's class centres
    text_basis: torch.Tensor | None = None  # (D, r') P of t_T

    @torch.no_grad()
    def pair_logits(self, tuned_features: torch.Tensor, frozen_features: torch.Tensor) -> torch.Tensor:
        """(N, D) features from the tuned and from the untuned vision tower → (N, C)."""
        assert self.vision_basis is not None and self.centres is not None and self.text_basis is not None
        vision = projected(tuned_features.float(), self.vision_basis) @ self.centres.T
        text = projected(frozen_features.float(), self.text_basis) @ projected(self.weights, self.text_basis).T
        return self.logit_scale * (vision + text)

    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """Both sides on the same (tuned) features: use :meth:`image_logits` for the paper's inference."""
        return self.pair_logits(image_features, image_features)

    def image_logits(self, encoder: EncoderInputs, frozen_features: torch.Tensor) -> torch.Tensor:
        return self.pair_logits(self.tuned_features(encoder), frozen_features)

    def pixel_logits(self, backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
        frozen = backbone.encode_images(pixels).cpu()
        with tuned(backbone, self.layernorm_state):
            return self.pair_logits(backbone.encode_images(pixels).cpu(), frozen)


@register_method
@dataclass
class ReCLIP(Method):
    name = "reclip"
    setting = "transductive"
    needs_encoder = True
    summary = "ReCLIP: LayerNorm self-training of both encoders on shared label-propagation pseudo-labels"

    epochs: int = 50
    max_iterations: int = 5000
    batch_size: int = 64  # the paper: 64, and 32 above 200 classes
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_sharing: bool = True
    k: int = 20
    alpha: float = 0.99
    cg_iterations: int = 20
    max_propagation_classes: int = 500
    inductive: bool = False  # adapt on the train split, score the test split

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        encoder = require_encoder(self.name, target.encoder)
        backbone, device = encoder.backbone, encoder.backbone.device
        frozen, text0 = target.normalised()  # v₀ (N, D) and t₀ (C, D), cached by the feature store
        vision_basis = text_basis(text0)
        centres_fallback = projected(text0, vision_basis)  # a class without agreed images keeps its text
        propagate = partial(
            propagation_scores, k=self.k, alpha=self.alpha, cg_iterations=self.cg_iterations,
            max_propagation_classes=self.max_propagation_classes,
        )  # fmt: skip
        history: dict[str, list] = {"agreement": [], "loss": [], "pseudo_labels": []}
        names = layernorm_names(backbone, ["vision", "text"])
        iterations = 0
        with tuning(backbone, ["vision", "text"]) as params:
            optimiser = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
            bar = progress(range(self.epochs + 1), desc="reclip", unit="epoch")
            for epoch in bar:  # the last pass only labels: the last model's pseudo-labels and centres
                tuned_x, texts, labels = self._pseudo_labels(encoder, frozen, text0, propagate)
                rows = shared_labels(labels[0], labels[1], self.label_sharing)
                centres = class_centres(projected(tuned_x[rows], vision_basis), labels[0][rows], centres_fallback)
                history["agreement"].append(len(rows) / len(frozen))
                history["pseudo_labels"].append(labels[0].tolist())
                if epoch == self.epochs or len(rows) == 0 or iterations >= self.max_iterations:
                    break
                mean_loss, steps = self._train_epoch(
                    encoder, frozen, rows, labels, centres.to(device), vision_basis.to(device), optimiser,
                    self.max_iterations - iterations,
                )  # fmt: skip
                iterations += steps
                history["loss"].append(mean_loss)
                bar.set_postfix(loss=f"{mean_loss:.3f}", agreement=f"{history['agreement'][-1]:.2f}")
            state = layernorm_state(backbone, names)
        classifier = ReCLIPClassifier(
            texts, target.class_names, 100.0, method=self.name, hparams={**self.hparams(), "iterations": iterations},
            layernorm_state=state, vision_basis=vision_basis, centres=centres, text_basis=text_basis(texts),
        )  # fmt: skip
        return Fit(classifier, target_logits=classifier.pair_logits(tuned_x, frozen), history=history)

    def _train_epoch(
        self,
        encoder: EncoderInputs,
        frozen: torch.Tensor,
        rows: torch.Tensor,
        labels: tuple[torch.Tensor, torch.Tensor],
        centres: torch.Tensor,
        vision_basis: torch.Tensor,
        optimiser: torch.optim.Optimizer,
        max_steps: int,
    ) -> tuple[float, int]:
        """One epoch over ``rows``: ReCLIP-V on its labels ``labels[0]``, ReCLIP-T on ``labels[1]`` (the same
        on shared rows). Returns the mean loss and the number of steps."""
        backbone, device = encoder.backbone, encoder.backbone.device
        total, steps = 0.0, 0
        for batch_rows, pixels in encoder.loader(backbone.preprocess, rows.tolist(), True, self.batch_size):
            y_vision, y_text = labels[0][batch_rows].to(device), labels[1][batch_rows].to(device)
            with torch.enable_grad(), autocast(device, backbone.precision):
                v = F.normalize(backbone.image_forward(pixels.to(device)).float(), dim=-1)
                loss_v = F.cross_entropy(100.0 * projected(v, vision_basis) @ centres.T, y_vision)
                t = class_text_features(backbone, encoder.sentences).to(device)
                basis_t = text_basis(t.detach().cpu()).to(device)  # P_T follows t_T, no gradient through the SVD
                x0 = projected(frozen[batch_rows].to(device), basis_t)
                loss_t = F.cross_entropy(100.0 * x0 @ projected(t, basis_t).T, y_text)
                loss = loss_v + loss_t
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + float(loss.detach()), steps + 1
            if steps >= max_steps:
                break
        return total / max(steps, 1), steps

    @torch.no_grad()
    def _pseudo_labels(
        self, encoder: EncoderInputs, frozen: torch.Tensor, text0: torch.Tensor, propagate: Callable[..., torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Tuned image features (N, D), tuned class texts (C, D), and the (N,) pseudo-labels of ReCLIP-V and
        ReCLIP-T, with the model as it is now."""
        tuned_x = F.normalize(encode_rows(encoder), dim=-1)
        texts = class_text_features(encoder.backbone, encoder.sentences)
        vision_labels = propagate(tuned_x, text0).argmax(1)
        text_labels = propagate(frozen, texts).argmax(1)
        return tuned_x, texts, (vision_labels, text_labels)
