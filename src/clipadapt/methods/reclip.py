"""ReCLIP: cross-modality self-training of the LayerNorms of both encoders (Hu et al., WACV 2024,
arXiv:2308.03793, §3.3).

Where the paper is explicit this module follows the paper; where it is silent, the official code
(``michiganleon/ReCLIP_WACV``). Every epoch starts with the pseudo-labels of both sides (no
gradients), from the label propagation of :mod:`clipadapt.methods.reclip_lp` (P2 projection, k = 20):

- **ReCLIP-V** (vision LayerNorms tuned, text frozen): the target images encoded by the tuned vision tower,
  propagated from the frozen class texts t₀ in the P2 space of t₀ → ỹ_V. Its classifier, the class centres
  ŵ, is the normalised mean of the *original* (unprojected) features of every node label propagation
  assigns to the class, the text anchors included (the code's ``cluster_centriod``);
- **ReCLIP-T** (text LayerNorms tuned, vision frozen): the untuned image features v₀ (from the feature
  store, never re-encoded), propagated from the tuned class texts t_T (the full prompt ensemble) in the P2
  space of t_T → ỹ_T.

Then one pass over **all** rows (shuffled, batch 64; 32 above 200 classes, §4.2) trains both sides with
plain cross-entropy (§3.3) on unprojected cosine logits (the code's, where §3.3's notation is silent):

    Loss^V = CE(100 · cos(v_V, ŵ), ỹ_V),     Loss^T = CE(100 · cos(v₀, t_T¹), ỹ_T)

with t_T¹ the tuned text of each class's *first* prompt (the code trains ReCLIP-T on templates[0]) and,
with label sharing, each mean taken over the rows where ỹ_V = ỹ_T only (Σ m·CE / Σ m; a batch without an
agreed row makes no step). Without label sharing every row trains each side on its own labels. SGD
(lr 1e-3, momentum 0.9, weight decay 1e-4) on the LayerNorm affine parameters of both towers, for
min(50 epochs, 5000 iterations) (§4.2). Inference averages both sides (the code's 0.5·(t + v); §3.3 "adds
the prediction logits"), 100 · cos(v_V, ŵ) and 100 · cos(v₀, t_T¹), with the last model's centres. The
reported model is the last epoch's; the pseudo-labels of every epoch are kept in the history for plots (the
runner scores them only when labels exist).

One backbone serves both sides: ReCLIP-V changes only vision LayerNorms and ReCLIP-T only text LayerNorms,
so the two "models" of the paper are one model whose untuned vision features v₀ are cached.

Departures from the code, where the paper is explicit (docs/faithfulness.md): the code divides Loss^V by
the batch size once more than Loss^T (the paper: CE for both), and runs min(100, ⌊N/5000⌋ + 2) epochs (the
paper: min(50 epochs, 5000 iterations)); ``schedule="official"`` runs the code's epochs and its Loss^V.
The code also reports the best epoch on test labels, never done here. The class texts are the prompt
ensemble of the run's templates (or class descriptions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F

from clipadapt.backbones.base import Backbone
from clipadapt.features.featureset import FeatureSet
from clipadapt.features.images import Batches, EncoderInputs
from clipadapt.methods.assumptions import small_graph_warning
from clipadapt.methods.base import Fit, Method
from clipadapt.methods.encoder import (
    TunedClassifier,
    class_text_features,
    encode_rows,
    layernorm_names,
    layernorm_state,
    relative_shift,
    require_encoder,
    tuned,
    tuning,
)
from clipadapt.methods.reclip_lp import class_centres, propagation_scores
from clipadapt.methods.registry import register_method
from clipadapt.progress import progress
from clipadapt.runtime import autocast, gradient_scaler, optimiser_step


def shared_labels(vision: torch.Tensor, text: torch.Tensor, sharing: bool = True) -> torch.Tensor:
    """(N,) bool mask m of the rows whose loss counts: where both sides' (N,) pseudo-labels agree (label
    sharing), or every row (without it)."""
    return vision == text if sharing else torch.ones_like(vision, dtype=torch.bool)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ m·CE / Σ m: the cross-entropy of the (B, C) logits averaged over the rows where the (B,) mask holds."""
    return (F.cross_entropy(logits, labels, reduction="none") * mask).sum() / mask.sum()


def first_prompts(sentences: list[list[str]]) -> list[list[str]]:
    """Each class's first prompt (ReCLIP-T's training texts, templates[0] in the official code)."""
    return [per_class[:1] for per_class in sentences]


@dataclass
class ReCLIPClassifier(TunedClassifier):
    """The mean of both sides' logits: ReCLIP-V, tuned vision features against the class centres, and
    ReCLIP-T, untuned vision features against the tuned first-prompt class texts (``weights``)."""

    centres: torch.Tensor | None = None  # (C, D) the last model's class centres

    @torch.no_grad()
    def pair_logits(self, tuned_features: torch.Tensor, frozen_features: torch.Tensor) -> torch.Tensor:
        """(N, D) features from the tuned and from the untuned vision tower → (N, C)."""
        assert self.centres is not None
        vision = self.unit(tuned_features) @ self.centres.T
        text = self.unit(frozen_features) @ self.weights.T
        return self.logit_scale * 0.5 * (vision + text)

    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """Both sides on the same (tuned) features: use :meth:`image_logits` for the paper's inference."""
        return self.pair_logits(image_features, image_features)

    def image_logits(self, encoder: EncoderInputs, frozen_features: torch.Tensor) -> torch.Tensor:
        return self.pair_logits(self.tuned_features(encoder), frozen_features)

    def pixel_logits(self, backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
        frozen = backbone.encode_images(pixels)
        with tuned(backbone, self.layernorm_state):
            return self.pair_logits(backbone.encode_images(pixels), frozen)


# per-epoch history: losses, agreement of the two sides, ReCLIP-V's pseudo-labels, the model's predictions,
# and how far the LayerNorms moved (‖θ − θ₀‖ / ‖θ₀‖)
SERIES = ("agreement", "loss", "pseudo_labels", "predictions", "layernorm_shift")


@register_method
@dataclass
class ReCLIP(Method):
    name = "reclip"
    setting = "transductive"
    needs_encoder = True
    summary = "ReCLIP: LayerNorm self-training of both encoders on shared label-propagation pseudo-labels"
    paper = (
        "Hu et al., ReCLIP: Refine Contrastive Language Image Pre-Training with Source Free Domain Adaptation"
        " (WACV 2024, arXiv:2308.03793)"
    )
    code = "https://github.com/michiganleon/ReCLIP_WACV"
    faithfulness = "reclip"

    epochs: int = 50
    max_iterations: int = 5000
    batch_size: int = 0  # 0: the paper's rule, 64, or 32 above 200 classes
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_sharing: bool = True
    k: int = 20
    alpha: float = 0.99
    cg_iterations: int = 20
    max_propagation_classes: int = 500
    inductive: bool = False  # adapt on the train split, score the test split
    # "official": the official code's min(100, ⌊N/5000⌋ + 2) epochs and ReCLIP-V's loss divided by the batch size
    schedule: Literal["paper", "official"] = "paper"

    @property
    def adapts_on_train_split(self) -> bool:
        return self.inductive

    def assumption_warning(self, diagnostics: Mapping[str, float]) -> str | None:
        return small_graph_warning(self.name, self.k, diagnostics)

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        encoder = require_encoder(self.name, target.encoder)
        backbone = encoder.backbone
        frozen, text0 = (t.to(backbone.device) for t in target.normalised())  # v₀ (N, D), t₀ (C, D), cached
        batch_size = self.batch_size or (32 if text0.shape[0] > 200 else 64)
        propagate = partial(
            propagation_scores, k=self.k, alpha=self.alpha, cg_iterations=self.cg_iterations,
            max_propagation_classes=self.max_propagation_classes,
        )  # fmt: skip
        # the images are decoded once and every pass is served from memory (when they fit; else both passes
        # keep their loader processes for the whole fit, decoding every epoch)
        pixels = encoder.decode(backbone.preprocess)
        labelling = encoder.batches(backbone.preprocess, pixels=pixels)
        training = encoder.batches(backbone.preprocess, shuffle=True, batch_size=batch_size, pixels=pixels)
        series: dict[str, list[torch.Tensor]] = {key: [] for key in SERIES}
        names = layernorm_names(backbone, ["vision", "text"])
        iterations = 0
        with tuning(backbone, ["vision", "text"]) as params:
            start = [p.detach().clone() for p in params]
            optimiser = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
            scaler = gradient_scaler(backbone.device, backbone.precision)
            epochs = self.epochs if self.schedule == "paper" else min(100, len(frozen) // 5000 + 2)
            bar = progress(range(epochs + 1), desc="reclip", unit="epoch")
            for epoch in bar:  # the last pass only labels: the last model's pseudo-labels and centres
                tuned_x, centres, labels = self._pseudo_labels(encoder, labelling, frozen, text0, propagate)
                mask = shared_labels(labels[0], labels[1], self.label_sharing)
                series["agreement"].append((labels[0] == labels[1]).float().mean())
                series["pseudo_labels"].append(labels[0])
                with torch.no_grad():  # ReCLIP-T's classifier: the class texts of the first prompts
                    texts = class_text_features(backbone, first_prompts(encoder.sentences))
                # what the model predicts now (the paper's inference: both sides' logits added)
                series["predictions"].append((tuned_x @ centres.T + frozen @ texts.T).argmax(1))
                series["layernorm_shift"].append(relative_shift(params, start))
                if epoch == epochs or iterations >= self.max_iterations:
                    break
                mask_on_cpu = mask.cpu()  # once per epoch: the batches are checked against this copy
                if not mask_on_cpu.any():
                    break
                mean_loss, steps = self._train_epoch(
                    training, encoder, frozen, labels, (mask, mask_on_cpu), centres, optimiser, scaler,
                    self.max_iterations - iterations,
                )  # fmt: skip
                iterations += steps
                series["loss"].append(mean_loss)
                bar.set_postfix(loss=f"{float(mean_loss):.3f}", agreement=f"{float(series['agreement'][-1]):.2f}")
            state = layernorm_state(backbone, names)  # texts, centres: the last pass's, of this model
        classifier = ReCLIPClassifier(
            texts, target.class_names, 100.0, method=self.name,
            hparams={**self.hparams(), "batch_size": batch_size, "epochs_run": epochs, "iterations": iterations},
            layernorm_state=state, centres=centres,
        )  # fmt: skip
        history: dict[str, list] = {
            key: [float(v) for v in series[key]] for key in ("agreement", "loss", "layernorm_shift")
        }
        for key in ("pseudo_labels", "predictions"):
            history[key] = [labels.tolist() for labels in series[key]]
        return Fit(classifier, target_logits=classifier.pair_logits(tuned_x, frozen), history=history)

    def _train_epoch(
        self,
        batches: Batches,
        encoder: EncoderInputs,
        frozen: torch.Tensor,
        labels: tuple[torch.Tensor, torch.Tensor],
        mask: tuple[torch.Tensor, torch.Tensor],
        centres: torch.Tensor,
        optimiser: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        max_steps: int,
    ) -> tuple[torch.Tensor, int]:
        """One shuffled pass over every row, at most ``max_steps`` batches: ReCLIP-V on ``labels[0]`` against
        ``centres``, ReCLIP-T on ``labels[1]``, each loss over the rows of ``mask`` (on the device, and a
        CPU copy that decides, without waiting for the device, which batches step). Returns the mean loss of
        the steps taken (on the device) and the number of batches."""
        backbone, device = encoder.backbone, encoder.backbone.device
        mask_on_device, mask_on_cpu = mask
        first = first_prompts(encoder.sentences)
        total, steps, taken = frozen.new_zeros(()), 0, 0
        for batch_rows, pixels in batches:
            if taken >= max_steps:
                break
            taken += 1
            if not mask_on_cpu[batch_rows].any():  # no agreed row in this batch: no step (as the code)
                continue
            rows = batch_rows.to(device, non_blocking=True)
            m = mask_on_device[rows]
            with torch.enable_grad(), autocast(device, backbone.precision):
                v = F.normalize(backbone.image_forward(pixels).float(), dim=-1)
                loss_v = masked_cross_entropy(100.0 * v @ centres.T, labels[0][rows], m)
                if self.schedule == "official":  # the official code divides ReCLIP-V's mean loss once more
                    loss_v = loss_v / len(batch_rows)
                t = class_text_features(backbone, first)  # with gradients: the text LayerNorms train
                loss_t = masked_cross_entropy(100.0 * frozen[rows] @ t.T, labels[1][rows], m)
                loss = loss_v + loss_t
            optimiser_step(loss, optimiser, scaler)
            total, steps = total + loss.detach(), steps + 1
        return total / max(steps, 1), taken

    @torch.no_grad()
    def _pseudo_labels(
        self,
        encoder: EncoderInputs,
        batches: Batches,
        frozen: torch.Tensor,
        text0: torch.Tensor,
        propagate: Callable[..., torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """With the model as it is now: tuned image features (N, D), ReCLIP-V's class centres (C, D), and the
        (N,) pseudo-labels of ReCLIP-V and ReCLIP-T, all on the device (``batches``: every row, in order)."""
        tuned_x = F.normalize(encode_rows(encoder, batches), dim=-1)
        vision_nodes = propagate(tuned_x, text0, with_anchors=True).argmax(1)  # (C + N,) anchors first
        centres = class_centres(torch.cat([text0, tuned_x]), vision_nodes, text0)
        texts = class_text_features(encoder.backbone, encoder.sentences)  # the full prompt ensemble
        text_labels = propagate(frozen, texts).argmax(1)
        return tuned_x, centres, (vision_nodes[len(text0) :], text_labels)
