"""CMM: cross-modal mapping for few-shot classification (``shared/papers/cmm-fewshot.txt``).

A residual linear map takes the normalised image feature into the text space, v' = W v̂ + v̂ (W is d × d,
no bias, initialised to zero so that training starts from zero-shot), and a learnable class text matrix
T starts from the prompt-ensemble prototypes. With v'' = v'/‖v'‖ and t̂_j = T_j/‖T_j‖:

    logits_cmm = 100 · v'' t̂ᵀ             (τ = CLIP's 0.01)
    logits     = α · logits_cmm + 100 · v̂ t̂₀ᵀ   (t̂₀ the frozen zero-shot prototypes)
    loss       = cross-entropy(logits at α = 1) + mean_i max(0, D_i,y − min_{j≠y} D_i,j + margin)

with the triplet on cosine distances D_ij = 1 − v̂_i·t̂_j between the image feature *before* the mapping
(as the paper's §3.2 states) and the learnable class texts, hardest negative class, margin 1.0. AdamW
(lr 1e-4, weight decay 1e-4), batch 8, 16 000 iterations, linear warm-up then cosine annealing to 1e-5.
At inference α is searched on the validation split over 0.1, 0.2, …, 2.0.

Choices the paper leaves open, and deviations (documented in the README):
- ties in the α search go to the α nearest the training value 1 (the operating point W and T were fitted
  at), then to the smaller; with a handful of validation images per class many α reach the same accuracy;
- the paper warms up for "50 epochs", which for a large support set is longer than its 16 000
  iterations; warm-up here is min(50 epochs, 10 % of the iterations);
- augmented training images are the stored views of the support images: the paper's flip of every
  image is ``--views 1 --view_augment flip`` at extraction; other views (random crops) are used as given,
  and a feature file without views trains on the images alone;
- W starts at zero (the paper does not say; zero keeps the start equal to zero-shot).

Ablations (Table 5 and 6): ``clip_logits=False`` drops the CLIP term, ``search_alpha=False`` keeps α = 1,
``triplet=False`` drops the triplet loss, ``mapping=False`` drops W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.supervised import (
    accuracy,
    augmentation,
    linspace_grid,
    require_labelled,
    search,
    training_samples,
)


def hardest_negative_triplet(distances: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean over samples of max(0, D[i, y_i] − min_{j ≠ y_i} D[i, j] + margin) (paper Eq. 7–8).

    Args:
        distances: (B, C) cosine distances; labels: (B,).
    Returns:
        () the loss.
    """
    positive = distances.gather(1, labels[:, None]).squeeze(1)
    negative = distances.scatter(1, labels[:, None], float("inf")).min(dim=1).values
    return (positive - negative + margin).clamp_min(0).mean()


def cmm_logits(x: torch.Tensor, mapping: torch.Tensor | None, texts: torch.Tensor) -> torch.Tensor:
    """100 · cos(W x̂ + x̂, T): (B, D) normalised features, (D, D) W or None, (C, D) T → (B, C)."""
    return 100.0 * cosines(map_features(x, mapping), texts)


def map_features(x: torch.Tensor, mapping: torch.Tensor | None) -> torch.Tensor:
    """v'' = (W x̂ + x̂)/‖W x̂ + x̂‖ for (B, D) normalised x̂ and (D, D) W (x̂ itself when W is None)."""
    return x if mapping is None else F.normalize(x + x @ mapping.T, dim=-1)


def cosines(x: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """(B, D) unit rows against (C, D) texts → (B, C) cosines.

    The (B, C) product is divided by the text norms instead of normalising T: with C = 1000 the (C, D)
    normalisation and its backward pass cost more than the product itself.
    """
    return (x @ texts.T) / texts.norm(dim=-1)


@dataclass
class CMMClassifier(Classifier):
    """α · cmm_logits + the zero-shot logits of ``weights`` (the frozen prototypes)."""

    mapping: torch.Tensor | None = None  # (D, D)
    texts: torch.Tensor | None = None  # (C, D) learned class texts
    alpha: float = 1.0
    clip_logits: bool = True

    @torch.no_grad()
    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(image_features.float(), dim=-1)
        assert self.texts is not None
        out = self.alpha * cmm_logits(x, self.mapping, self.texts)
        return out + self.logit_scale * x @ self.weights.T if self.clip_logits else out

    @torch.no_grad()
    def embed(self, image_features: torch.Tensor) -> torch.Tensor:
        """The mapped features v'' (the CMM branch's space)."""
        return map_features(F.normalize(image_features.float(), dim=-1), self.mapping)

    def class_vectors(self) -> torch.Tensor:
        assert self.texts is not None
        return F.normalize(self.texts.float(), dim=-1)


TRAIN_ALPHA = 1.0  # the fusion weight during training (paper §4.1)


def alpha_grid() -> list[float]:
    """α ∈ {0.1, 0.2, …, 2.0} in the order :func:`search` breaks ties: nearest to TRAIN_ALPHA first (then smaller)."""
    return sorted(linspace_grid(0.1, 2.0, 20), key=lambda a: (round(abs(a - TRAIN_ALPHA), 6), a))


def warmup_cosine(iterations: int, warmup: int, lr: float, min_lr: float) -> torch.Tensor:
    """(iterations,) learning rates: linear from lr/warmup to lr over ``warmup`` steps, then cosine to min_lr."""
    steps = torch.arange(iterations, dtype=torch.float64)
    ramp = lr * (steps + 1) / max(warmup, 1)
    progress = (steps - warmup).clamp_min(0) / max(iterations - warmup, 1)
    cosine = min_lr + 0.5 * (lr - min_lr) * (1 + torch.cos(math.pi * progress))
    return torch.where(steps < warmup, ramp, cosine)


@register_method
@dataclass
class CMM(Method):
    name = "cmm"
    setting = "few-shot"
    label_free = False
    summary = "CMM: residual linear image→text map + learnable class texts, triplet loss, fused with CLIP"

    iterations: int = 16000
    batch_size: int = 8
    lr: float = 1e-4
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    warmup_epochs: int = 50
    margin: float = 1.0
    triplet: bool = True
    mapping: bool = True
    clip_logits: bool = True
    search_alpha: bool = True  # α over 0.1…2.0 on validation; False keeps α = 1
    augment: bool = True

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        require_labelled(self.name, support, validation)
        assert support is not None and validation is not None and validation.labels is not None
        x, y = training_samples(support, self.augment)
        _, prototypes = support.normalised()
        mapping, texts, losses = self.train(x, y, prototypes)
        x_val, _ = validation.normalised()

        def val_acc(alpha: float) -> float:
            candidate = CMMClassifier(prototypes, [], 100.0, mapping=mapping, texts=texts, alpha=alpha,
                                      clip_logits=self.clip_logits)  # fmt: skip
            return accuracy(candidate.logits(x_val), validation.labels)

        alphas = alpha_grid() if self.search_alpha else [TRAIN_ALPHA]
        alpha, acc = search(alphas, val_acc)
        hparams = {
            **self.hparams(),
            "alpha": alpha,
            "validation_acc1": acc,
            "augmentation": augmentation(support, self.augment),
        }
        classifier = CMMClassifier(
            prototypes, target.class_names, 100.0, method=self.name, hparams=hparams,
            mapping=mapping, texts=texts, alpha=alpha, clip_logits=self.clip_logits,
        )  # fmt: skip
        return Fit(classifier, history={"loss": losses})

    def train(
        self, x: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, list[float]]:
        """Fit W (D, D) and T (C, D) on (M, D) normalised features x with labels y; returns them and the
        mean loss of every 1000 iterations."""
        dim = x.shape[1]
        # W is held transposed: x @ Wᵀ then reads a contiguous matrix (3× faster for 8 rows on CPU); AdamW
        # is elementwise, so the trajectory is the same
        mapping_t = torch.zeros(dim, dim, requires_grad=True) if self.mapping else None
        mapping = None if mapping_t is None else mapping_t.T
        texts = prototypes.clone().requires_grad_(True)
        params = [texts] if mapping_t is None else [mapping_t, texts]
        # fused: one pass over the d × d map per step instead of one per AdamW operation (2× faster here)
        optimiser = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay, fused=True)
        per_epoch = math.ceil(len(x) / self.batch_size)
        warmup = min(self.warmup_epochs * per_epoch, self.iterations // 10)
        rates = warmup_cosine(self.iterations, warmup, self.lr, self.min_lr).tolist()
        zeroshot = 100.0 * x @ prototypes.T
        passes = math.ceil(self.iterations * self.batch_size / len(x))
        order = torch.cat([torch.randperm(len(x)) for _ in range(passes)])  # the runner's --seed seeds them
        losses, running = [], 0.0
        with torch.enable_grad():
            for step in range(self.iterations):
                batch = order[step * self.batch_size : (step + 1) * self.batch_size]
                xb, yb = x[batch], y[batch]
                # one product for the mapped features (logits) and the raw ones (triplet distances)
                both = cosines(torch.cat([map_features(xb, mapping), xb]), texts)
                logits = 100.0 * both[: len(xb)]
                if self.clip_logits:
                    logits = logits + zeroshot[batch]  # α = TRAIN_ALPHA = 1 while training
                loss = F.cross_entropy(logits, yb)
                if self.triplet:
                    loss = loss + hardest_negative_triplet(1 - both[len(xb) :], yb, self.margin)
                for group in optimiser.param_groups:
                    group["lr"] = rates[step]
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                running += float(loss.detach())
                if (step + 1) % 1000 == 0 or step + 1 == self.iterations:
                    losses.append(running / ((step % 1000) + 1))
                    running = 0.0
        return (None if mapping is None else mapping.detach().contiguous()), texts.detach(), losses
