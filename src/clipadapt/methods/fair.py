"""FAIR: self-training with a learned alignment score over image crops (Ali et al., WACV 2026,
arXiv:2507.09615: §3.4, Algorithm 1, supplementary 6.1).

Class Description Anchors Z* (C × D) start as each class's mean description embedding (a CuPL-style
``descriptions`` file, else the run's prompts); the text encoder is not used again. For every batch,
without gradients, from the weak view x (the backbone's own resize + centre crop, the paper's CenterCrop):

- N = 16 square crops of side λ·min(W, H), λ ~ U(0.5, 0.9), resized to the input size (Eq. 6);
- crop weights w̃_i = cos(CLS, CLS_i) / Σ_l cos(CLS, CLS_l), the [CLS] tokens of the image and its crops,
  *not* a softmax (Eq. 12); the k = 4 crops of largest weight are kept (Eq. 13);
- the learned alignment score ψ_j = Σ_{i ∈ top-k} w̃_i cos(f_i, Z*_j) (Eq. 14), pseudo-label ŷ = argmax ψ,
  and the adaptive weight γ = S₁ (S₁ − S₂) (Eq. 16) of the two largest *probabilities* softmax(100 ψ).

Why probabilities (``gamma_scores``): Algorithm 1 takes S from "the top-2 logits" of ψ, and CLIP's logits
of a cosine score are 100·ψ, the scale at which the paper's own p_A(x) = softmax(sim(·)) is read; §3.4 calls
γ a confidence that "down-weights uncertain pseudo-labels"; and DPA, the code FAIR extends (same authors,
``Externalhappy/DPA``), weights its pseudo-labels by ratios of softmax probabilities at logit scale 100, values in
[0, 1]. So γ ∈ [0, 1], 1 for a certain pseudo-label. On raw cosines (``gamma_scores="cosines"``, this
module's earlier default) γ is of order 1e-3 and the self-training term is switched off; on raw logits
(``"logits"``) it is of order 10–100 and the fairness term, weighted equally in L = L_st + L_reg, vanishes.

Then, with gradients, on a strongly augmented view A(x) (DPA's: RandomResizedCrop with scale 0.3–1 and
bicubic resizing, flip, timm's RandAugment ``rand-m9-mstd0.5-inc1``): p = softmax(100 · cos(E_v(A(x)), Z*)),

    L = mean_batch γ·CE(p, ŷ)  −  (1/C) Σ_j log p̄_j,     p̄ ← ½ (p̄.detach() + mean_batch p)

(Eq. 17 and the fairness term after Eq. 15: p̄ is "a moving average of the model's predictions … across the
batch"; the paper gives no rate, so p̄ follows the same group's code, microCLIP's ``wca_baseline``: rate ½,
reset at each epoch's first batch, the past detached). AdamW, lr 1e-4 with a per-iteration cosine schedule
to 2e-6, weight decay 0.1 on the LayerNorm weights and the anchors and 0 on the biases (DPA's, where the
paper gives none), batch 32, 15 epochs, on the vision LayerNorms and Z*; the last epoch's model is reported.
Inference: 100 · cos(E_v(x), Z*). The result's ``history`` holds both loss terms per epoch
(``loss_self_training``, ``loss_fairness``) and the mean γ (``gamma_mean``).

Ablations (Table 3): ``las=False`` scores crops against the initial anchors (a fixed alignment score, as
LaFTer); ``weighting=False`` sets γ = 1; ``pseudo_view="global"`` takes pseudo-labels from the weak view's
embedding instead of crops (FAIR-g). ``fairness_momentum=0`` takes p̄ from the current batch only (DPA).

Departures (docs/faithfulness.md): the logit scale of p is CLIP's 100 (the paper writes sim(·) without
one); crops are cut from the preprocessed weak view (any position, real-valued side) and resized
bilinearly, all B·N at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchvision import transforms

from clipadapt.backbones.base import Backbone
from clipadapt.data.augment import strong_view
from clipadapt.data.prompts import expand_prompts, read_prompts
from clipadapt.errors import ClipAdaptError
from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels.crops import random_crops
from clipadapt.methods.base import Fit, Method
from clipadapt.methods.encoder import (
    TunedClassifier,
    checkpointing,
    class_text_features,
    encode_rows,
    layernorm_names,
    layernorm_state,
    relative_shift,
    require_encoder,
    tuning,
)
from clipadapt.methods.registry import register_method
from clipadapt.progress import progress
from clipadapt.runtime import autocast, gradient_scaler, optimiser_step


def crop_weights(cls: torch.Tensor, crop_cls: torch.Tensor) -> torch.Tensor:
    """FAIR's Eq. 12: (B, W) image [CLS] and (B, N, W) crop [CLS] → (B, N) cos(CLS, CLS_i) / Σ_l cos(CLS, CLS_l)."""
    sims = torch.einsum("bw,bnw->bn", F.normalize(cls, dim=-1), F.normalize(crop_cls, dim=-1))
    return sims / sims.sum(dim=1, keepdim=True)


def alignment_scores(crop_features: torch.Tensor, anchors: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """FAIR's Eq. 13–14: Σ over the k crops of largest weight of w̃_i cos(f_i, Z_j).

    Args:
        crop_features: (B, N, D); anchors: (C, D) Z*; weights: (B, N) crop weights.
    Returns:
        (B, C) alignment scores ψ.
    """
    top = weights.topk(min(k, weights.shape[1]), dim=1).indices  # (B, k)
    kept = torch.zeros_like(weights).scatter_(1, top, 1.0) * weights
    cos = F.normalize(crop_features, dim=-1) @ F.normalize(anchors, dim=-1).T  # (B, N, C)
    return torch.einsum("bn,bnc->bc", kept, cos)


GAMMA_SCORES = ("probabilities", "logits", "cosines")


def adaptive_weight(scores: torch.Tensor, read_as: str = "probabilities") -> torch.Tensor:
    """FAIR's Eq. 16: (B, C) alignment scores ψ → (B,) γ = S₁ (S₁ − S₂) of the largest two S.

    S are the scores read as ``probabilities`` softmax(100 ψ) (γ ∈ [0, 1]; the module docstring says why),
    ``logits`` 100 ψ, or the raw ``cosines`` ψ.
    """
    if read_as == "probabilities":
        scores = (100.0 * scores).softmax(dim=1)
    elif read_as == "logits":
        scores = 100.0 * scores
    elif read_as != "cosines":
        raise ClipAdaptError(f"fair: gamma_scores must be one of {', '.join(GAMMA_SCORES)}, not {read_as!r}")
    top2 = scores.topk(2, dim=1).values
    return top2[:, 0] * (top2[:, 0] - top2[:, 1])


def fairness_loss(mean_probs: torch.Tensor) -> torch.Tensor:
    """−(1/C) Σ_j log p̄_j for (C,) mean predicted probabilities: smallest when predictions are balanced."""
    return -mean_probs.clamp_min(1e-12).log().mean()


def moving_average(previous: torch.Tensor | None, batch: torch.Tensor, momentum: float) -> torch.Tensor:
    """p̄ ← m · p̄ + (1 − m) · batch mean, the past detached (only this batch's predictions get gradients);
    the batch itself when there is no past (each epoch's first batch). (C,) → (C,)."""
    return batch if previous is None else momentum * previous.detach() + (1 - momentum) * batch


def strong_augmentation(backbone: Backbone) -> transforms.Compose:
    """DPA's strong view (:func:`clipadapt.data.augment.strong_view`) at the backbone's input size, then the
    backbone's preprocessing (whose resize and crop leave an image of the input size as it is)."""
    return transforms.Compose([strong_view(backbone.image_size), backbone.preprocess])


class WeakAndStrong:
    """An image → (weak view, strong view) pixel tensors."""

    def __init__(self, backbone: Backbone) -> None:
        self.weak, self.strong = backbone.preprocess, strong_augmentation(backbone)

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weak(image), self.strong(image)


# per-epoch history besides the loss terms: the pseudo-labels, the model's predictions, and how far the
# LayerNorms and anchors moved (‖θ − θ₀‖ / ‖θ₀‖)
PER_EPOCH = ("pseudo_labels", "predictions", "layernorm_shift")


@register_method
@dataclass
class FAIR(Method):
    name = "fair"
    setting = "transductive"
    needs_encoder = True
    summary = "FAIR: vision LayerNorm + class description anchors, pseudo-labels from a learned crop alignment"
    paper = (
        "Ali et al., Towards Fine-Grained Adaptation of CLIP via a Self-Trained Alignment Score"
        " (WACV 2026, arXiv:2507.09615)"
    )
    code = ""
    faithfulness = "fair"

    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-4
    min_lr: float = 2e-6  # end of the per-iteration cosine schedule (DPA's; the paper gives none)
    weight_decay: float = 0.1  # on LayerNorm weights and anchors, 0 on biases (DPA's; the paper gives none)
    crops: int = 16  # N
    top_k: int = 4  # k
    crop_scale_min: float = 0.5  # λ ~ U(min, max), as WCA
    crop_scale_max: float = 0.9
    descriptions: str = ""  # CuPL-style JSON {class: [sentences]}; empty: the run's prompts
    las: bool = True  # False: the alignment score uses the initial anchors (Table 3, "w/o LAS")
    weighting: bool = True  # False: γ = 1 (Table 3, "w/o weight")
    gamma_scores: Literal["probabilities", "logits", "cosines"] = "probabilities"  # S of γ = S₁(S₁ − S₂)
    fairness_momentum: float = 0.5  # p̄ ← m·p̄ + (1 − m)·batch mean, reset every epoch; 0: the batch mean
    pseudo_view: Literal["crops", "global"] = "crops"  # "global": pseudo-labels from the weak view itself (FAIR-g)
    grad_checkpointing: bool = False
    inductive: bool = False  # adapt on the train split, score the test split

    @property
    def adapts_on_train_split(self) -> bool:
        return self.inductive

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        encoder = require_encoder(self.name, target.encoder)
        backbone, device = encoder.backbone, encoder.backbone.device
        initial = self._anchors(target).to(device)
        anchors = torch.nn.Parameter(initial.clone())
        # the crops are drawn on the device, from a generator seeded by the run's seed
        generator = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31, (1,))))
        # one loader for every epoch (its workers stay up); each image's strong view is seeded by epoch and row
        loader = encoder.loader(
            WeakAndStrong(backbone), shuffle=True, batch_size=self.batch_size, random_transform=True
        )
        names = layernorm_names(backbone, ["vision"])
        steps_per_epoch = math.ceil(len(target) / self.batch_size)
        series = ("loss", "loss_self_training", "loss_fairness", "gamma_mean", "agreement")
        epochs: dict[str, list[torch.Tensor]] = {key: [] for key in (*series, *PER_EPOCH)}
        with checkpointing(backbone, self.grad_checkpointing), tuning(backbone, ["vision"]) as params:
            start = [p.detach().clone() for p in params]
            decayed = [p for name, p in zip(names, params, strict=True) if not name.endswith("bias")]
            biases = [p for name, p in zip(names, params, strict=True) if name.endswith("bias")]
            optimiser = torch.optim.AdamW(
                [{"params": [*decayed, anchors], "weight_decay": self.weight_decay},
                 {"params": biases, "weight_decay": 0.0}], lr=self.lr,
            )  # fmt: skip
            scaler = gradient_scaler(device, backbone.precision)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimiser, self.epochs * steps_per_epoch, eta_min=self.min_lr
            )
            bar = progress(range(self.epochs), desc="fair", unit="epoch")
            for _ in bar:
                # everything the epoch records stays on the device until the epoch ends
                pseudo = torch.full((len(target),), -1, dtype=torch.long, device=device)
                sums = {key: initial.new_zeros(()) for key in series}
                mean_probs = None  # p̄, reset every epoch
                for rows, (weak, strong) in loader:
                    rows = rows.to(device, non_blocking=True)
                    label, gamma = self.pseudo_labels(backbone, weak.to(device, non_blocking=True),
                                                      anchors if self.las else initial, generator, rows)  # fmt: skip
                    with torch.enable_grad(), autocast(device, backbone.precision):
                        v = backbone.image_forward(strong.to(device, non_blocking=True)).float()
                        logits = 100.0 * F.normalize(v, dim=-1) @ F.normalize(anchors, dim=-1).T
                        mean_probs = moving_average(mean_probs, logits.softmax(dim=-1).mean(0), self.fairness_momentum)
                        self_training = (gamma * F.cross_entropy(logits, label, reduction="none")).mean()
                        fairness = fairness_loss(mean_probs)
                        loss = self_training + fairness
                    optimiser_step(loss, optimiser, scaler)
                    schedule.step()
                    pseudo[rows] = label
                    for key, value in (("loss", loss), ("loss_self_training", self_training),
                                       ("loss_fairness", fairness), ("gamma_mean", gamma.mean())):  # fmt: skip
                        sums[key] += value.detach() * len(rows)
                    sums["agreement"] += (logits.argmax(1) == label).sum()
                for key in series:
                    epochs[key].append(sums[key] / len(target))
                epochs["pseudo_labels"].append(pseudo)
                features = encode_rows(encoder)  # this epoch's model on the target images (the last one's is kept)
                epochs["predictions"].append((features.float() @ F.normalize(anchors.detach(), dim=-1).T).argmax(1))
                epochs["layernorm_shift"].append(relative_shift([*params, anchors], [*start, initial]))
                last = {key: float(epochs[key][-1]) for key in ("loss", "agreement")}  # once per epoch
                bar.set_postfix(loss=f"{last['loss']:.3f}", agreement=f"{last['agreement']:.2f}")
            state = layernorm_state(backbone, names)
            if not self.epochs:
                features = encode_rows(encoder)
        classifier = TunedClassifier(
            F.normalize(anchors.detach(), dim=-1), target.class_names, 100.0, method=self.name,
            hparams=self.hparams(), layernorm_state=state,
        )  # fmt: skip
        history: dict[str, list] = {key: [float(v) for v in epochs[key]] for key in (*series, "layernorm_shift")}
        for key in ("pseudo_labels", "predictions"):
            history[key] = [labels.tolist() for labels in epochs[key]]
        return Fit(classifier, target_logits=classifier.logits(features), history=history)

    @torch.no_grad()
    def pseudo_labels(
        self,
        backbone: Backbone,
        weak: torch.Tensor,
        anchors: torch.Tensor,
        generator: torch.Generator,
        rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) weak views → (B,) pseudo-labels and (B,) weights γ (1 without ``weighting``). ``rows``,
        the batch's (B,) row indices, are not read here (a benchmark's upper bound labels by row)."""
        with autocast(backbone.device, backbone.precision):
            if self.pseudo_view == "global":
                v = backbone.image_forward(weak).float()
                scores = F.normalize(v, dim=-1) @ F.normalize(anchors, dim=-1).T
            else:
                _, cls = backbone.image_forward_with_cls(weak)
                scale = (self.crop_scale_min, self.crop_scale_max)
                crops = random_crops(weak, self.crops, scale, generator)
                b = weak.shape[0]
                crop_features, crop_cls = backbone.image_forward_with_cls(crops.flatten(0, 1))
                weights = crop_weights(cls.float(), crop_cls.float().view(b, self.crops, -1))
                scores = alignment_scores(crop_features.float().view(b, self.crops, -1), anchors, weights, self.top_k)
        gamma = adaptive_weight(scores, self.gamma_scores) if self.weighting else torch.ones_like(scores[:, 0])
        return scores.argmax(dim=1), gamma

    def _anchors(self, target: FeatureSet) -> torch.Tensor:
        """(C, D) initial Class Description Anchors: mean description embedding of each class."""
        if not self.descriptions:
            return F.normalize(target.text_features.float(), dim=-1)
        prompts = read_prompts(self.descriptions)
        if not isinstance(prompts, dict):
            raise ClipAdaptError(f"fair: {self.descriptions!r} must be a descriptions file {{class: [sentences]}}")
        assert target.encoder is not None
        with torch.no_grad():
            return class_text_features(target.encoder.backbone, expand_prompts(target.class_names, prompts))
