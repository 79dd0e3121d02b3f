"""CMM: cross-modal mapping for few-shot classification (arXiv:2412.20110).

A residual linear map takes the normalised image feature into the text space, v' = W v̂ + v̂ (W is d × d,
no bias, initialised to zero so that training starts from zero-shot), and a learnable class text matrix
T starts from the prompt-ensemble prototypes. With v'' = v'/‖v'‖ and t̂_j = T_j/‖T_j‖, the two class
distributions of §3.3 are

    p_cmm  = softmax(100 · v'' t̂ᵀ)      (Eq. 5, τ = CLIP's 0.01)
    p_clip = softmax(100 · v̂ t̂₀ᵀ)       (zero-shot CLIP, t̂₀ the frozen prototypes)

and §3.3 "linearly combine[s] the two probability distributions": P = α · p_cmm + p_clip (Eq. 9). Training
(α = 1) minimises −mean log P_y (Eq. 10, the log of the fused output) plus the triplet
mean_i max(0, D_i,y − min_{j≠y} D_i,j + margin) on cosine distances D_ij = 1 − v̂_i·t̂_j between the image
feature *before* the mapping (§3.2) and the learnable class texts, hardest negative class, margin 1.0.
AdamW (lr 1e-4, weight decay 1e-4), batch 8, 16 000 iterations, linear warm-up then cosine to 1e-5. At
inference α is searched on the validation split over 0.1, 0.2, …, 2.0; the classifier's logits are
log(P / (1 + α)), so that their softmax is the fused distribution itself.

α ties (the paper does not say): among the α of best validation top-1, the one whose normalised fusion
gives the validation labels the lowest negative log-likelihood, then the smaller α. The rule and its
principle were written down (docs/faithfulness.md) before any result of this fusion was looked at.

Choices the paper leaves open, and departures (docs/faithfulness.md):
- the paper warms up for "50 epochs", which for a large support set is longer than its 16 000
  iterations; warm-up here is min(50 epochs, 10 % of the iterations);
- augmented training images are the stored views of the support images: the paper's flip of every
  image is ``--views 1 --view_augment flip`` at extraction; other views (random crops) are used as given,
  and a feature file without views trains on the images alone;
- W starts at zero (the paper does not say; zero keeps the start equal to zero-shot).

Ablations (Table 5 and 6): ``clip_logits=False`` drops p_clip (P = p_cmm), ``search_alpha=False`` keeps
α = 1, ``triplet=False`` drops the triplet loss, ``mapping=False`` drops W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.supervised import augmentation, linspace_grid, require_labelled, search, training_samples


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


def fused_log_probs(log_cmm: torch.Tensor, log_clip: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """log of the normalised fusion (α · p_cmm + p_clip) / (1 + α) (Eq. 9), from (B, C) log-probabilities;
    log p_cmm itself without the CLIP branch. Computed in the log domain (no underflow at scale 100)."""
    if log_clip is None:
        return log_cmm
    return torch.logaddexp(log_cmm + math.log(alpha), log_clip) - math.log1p(alpha)


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
        """(N, D) → (N, C) log of the fused distribution (its softmax is the distribution itself)."""
        return fused_log_probs(*self.branch_log_probs(image_features), self.alpha)

    @torch.no_grad()
    def branch_log_probs(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, D) → (N, C) log p_cmm and (N, C) log p_clip (None without the CLIP branch), before fusion."""
        x = self.unit(image_features)
        assert self.texts is not None
        log_cmm = cmm_logits(x, self.mapping, self.texts).log_softmax(dim=-1)
        log_clip = (self.logit_scale * x @ self.weights.T).log_softmax(dim=-1) if self.clip_logits else None
        return log_cmm, log_clip

    @torch.no_grad()
    def embed(self, image_features: torch.Tensor) -> torch.Tensor:
        """The mapped features v'' (the CMM branch's space)."""
        return map_features(self.unit(image_features), self.mapping)

    def class_vectors(self) -> torch.Tensor:
        assert self.texts is not None
        return F.normalize(self.texts.float(), dim=-1)


TRAIN_ALPHA = 1.0  # the fusion weight during training (paper §4.1)
ALPHAS = linspace_grid(0.1, 2.0, 20)  # the inference search, ascending: exact ties go to the smaller α


def validation_score(log_probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(top-1, −mean negative log-likelihood rounded to 1e-12) of (N, C) log-probabilities: compared as a
    tuple, accuracy first and the proper scoring rule on ties (docs/faithfulness.md, CMM's tie rule)."""
    accuracy = float((log_probs.argmax(dim=1) == labels).float().mean())
    return accuracy, round(float(log_probs.gather(1, labels[:, None]).mean()), 12)


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
    paper = "Cross-modal mapping for few-shot classification (arXiv:2412.20110)"
    code = ""
    faithfulness = "cmm"

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
        classifier = CMMClassifier(
            prototypes, target.class_names, 100.0, method=self.name, mapping=mapping, texts=texts,
            clip_logits=self.clip_logits,
        )  # fmt: skip
        branches = classifier.branch_log_probs(validation.image_features)
        alphas = ALPHAS if self.search_alpha else [TRAIN_ALPHA]
        classifier.alpha, (acc, log_likelihood) = search(
            alphas, lambda a: validation_score(fused_log_probs(*branches, a), validation.labels)
        )
        classifier.hparams = {
            **self.hparams(),
            "alpha": classifier.alpha,
            "validation_acc1": acc,
            "validation_nll": -log_likelihood,
            "augmentation": augmentation(support, self.augment),
        }
        return Fit(classifier, history={"loss": losses.tolist()})

    def train(
        self, x: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Fit W (D, D) and T (C, D) on (M, D) normalised features x with labels y; returns them and the
        mean loss of every 1000 iterations, all on the device (nothing inside waits for it)."""
        dim = x.shape[1]
        # W is held transposed: x @ Wᵀ then reads a contiguous matrix (3× faster for 8 rows on CPU); AdamW
        # is elementwise, so the trajectory is the same
        mapping_t = x.new_zeros(dim, dim, requires_grad=True) if self.mapping else None
        mapping = None if mapping_t is None else mapping_t.T
        texts = prototypes.clone().requires_grad_(True)
        params = [texts] if mapping_t is None else [mapping_t, texts]
        # fused: one pass over the d × d map per step instead of one per AdamW operation (2× faster here)
        optimiser = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay, fused=True)
        per_epoch = math.ceil(len(x) / self.batch_size)
        warmup = min(self.warmup_epochs * per_epoch, self.iterations // 10)
        rates = warmup_cosine(self.iterations, warmup, self.lr, self.min_lr).tolist()
        log_clip = (100.0 * x @ prototypes.T).log_softmax(dim=-1) if self.clip_logits else None
        passes = math.ceil(self.iterations * self.batch_size / len(x))
        # drawn on the CPU (the runner's --seed seeds them; every device draws the same), moved once
        order = torch.cat([torch.randperm(len(x)) for _ in range(passes)]).to(x.device)
        losses, running = [], x.new_zeros(())
        with torch.enable_grad():
            for step in range(self.iterations):
                batch = order[step * self.batch_size : (step + 1) * self.batch_size]
                xb, yb = x[batch], y[batch]
                # one product for the mapped features (logits) and the raw ones (triplet distances)
                both = cosines(torch.cat([map_features(xb, mapping), xb]), texts)
                log_cmm = (100.0 * both[: len(xb)]).log_softmax(dim=-1)
                fused = fused_log_probs(log_cmm, None if log_clip is None else log_clip[batch], TRAIN_ALPHA)
                loss = F.nll_loss(fused, yb)  # −log P_y (Eq. 10; the 1/(1+α) only shifts it by log 2)
                if self.triplet:
                    loss = loss + hardest_negative_triplet(1 - both[len(xb) :], yb, self.margin)
                for group in optimiser.param_groups:
                    group["lr"] = rates[step]
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                running += loss.detach()  # summed on the device: no wait for the device inside the loop
                if (step + 1) % 1000 == 0 or step + 1 == self.iterations:
                    losses.append(running / ((step % 1000) + 1))
                    running = x.new_zeros(())
        losses_out = torch.stack(losses) if losses else x.new_zeros(0)
        return (None if mapping is None else mapping.detach().contiguous()), texts.detach(), losses_out
