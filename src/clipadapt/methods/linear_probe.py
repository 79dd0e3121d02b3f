"""Linear probes on frozen image features: the classic one (CLIP, CoOp) and the cross-modal one.

``linear-probe``: multinomial logistic regression on L2-normalised image features, L2 penalty λ/2·‖W‖²
chosen on the validation split from a grid of decades (CoOp searches sklearn's C = 1/λ the same way).
Solved by full-batch L-BFGS; the grid is walked from strong to weak penalty, each fit warm-started from
the previous, and the model kept is the one of the best validation accuracy (the first on ties, i.e. the
strongest penalty).

``cross-modal-linear-probe`` (Lin et al., CVPR 2023, "Multimodality helps unimodality", arXiv:2301.06267): the official
recipe (``linzhiqiu/cross_modal_adaptation``). The class text features are training
samples of their class (every prompt's feature when the features carry ``text_all``, else the class
prototype; the official code uses its datasets' hand-crafted templates, one per class, seven for
ImageNet); every batch is half images (the shots and their stored views), half texts, each drawn as a
shuffled, drop-last loader; logits = 100 · x̂ Wᵀ (bias-free, W not renormalised); cross-entropy; AdamW
with a 50-iteration linear warm-up (from 1e-5) then cosine over 12 800 iterations. Every 100 iterations
the head is scored on the validation split and the best is kept (the first on ties). The grid lr ∈ {1e-3,
1e-4} × weight decay ∈ {0, 1e-2, 1e-4} × batch ∈ {8, 32} (a batch skipped when either half is not smaller
than its pool) is trained at once, and the grid point of best validation top-1 wins (the first in that
order on ties). W starts random (``init="random"``, nn.Linear's U(±1/√D)): the official script that
reproduces the paper (``linear_probe.sh`` at HEAD, whose last commit calls the zero-shot initialisation
"wrong"); ``init="zeroshot"`` (the argparse default) starts from the normalised class prototypes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError
from clipadapt.features.featureset import FeatureSet
from clipadapt.kernels.logistic import fit_logistic
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.supervised import accuracy, augmentation, require_labelled, search, training_samples
from clipadapt.progress import progress

PENALTIES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@register_method
@dataclass
class LinearProbe(Method):
    name = "linear-probe"
    setting = "few-shot"
    label_free = False
    summary = "Logistic regression on image features, L2 penalty chosen on the validation split"
    paper = (
        "Radford et al., Learning Transferable Visual Models From Natural Language Supervision"
        " (ICML 2021, arXiv:2103.00020)"
    )
    code = ""
    faithfulness = "linear-probes"

    evaluations: int = 50  # L-BFGS evaluations per penalty on the grid
    augment: bool = True  # train on the support images' stored views too

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        require_labelled(self.name, support, validation)
        assert support is not None and validation is not None and validation.labels is not None
        x, y = training_samples(support, self.augment)
        _, text = support.normalised()
        weights = torch.zeros_like(text)
        bias = text.new_zeros(text.shape[0])
        x_val, _ = validation.normalised()
        fits = {}
        for penalty in PENALTIES:  # strong to weak, each warm-started from the last
            weights, bias = fits[penalty] = fit_logistic(x, y, weights, bias, penalty, self.evaluations)
        best, val_acc = search(
            list(PENALTIES), lambda p: accuracy(torch.addmm(fits[p][1], x_val, fits[p][0].T), validation.labels)
        )
        weights, bias = fits[best]
        hparams = {
            **self.hparams(),
            "penalty": best,
            "validation_acc1": val_acc,
            "augmentation": augmentation(support, self.augment),
        }
        classifier = Classifier(weights, target.class_names, 1.0, bias=bias, method=self.name, hparams=hparams)
        return Fit(classifier)


CROSS_MODAL_GRID = tuple((lr, wd, batch) for lr in (1e-3, 1e-4) for wd in (0.0, 1e-2, 1e-4) for batch in (8, 32))


def warmup_then_cosine(iterations: int, warmup: int, lr: float, warmup_lr: float) -> torch.Tensor:
    """(iterations,) the official schedule: ``warmup_lr`` at step 0, lr·t/warmup for 0 < t < warmup, then
    cosine from lr, ½ lr (1 + cos(π (t − warmup) / iterations))."""
    t = torch.arange(iterations, dtype=torch.float64)
    cosine = 0.5 * lr * (1 + torch.cos(math.pi * (t - warmup) / iterations))
    rates = torch.where(t < warmup, lr * t / max(warmup, 1), cosine)
    rates[0] = warmup_lr if warmup > 0 else rates[0]
    return rates


def loader_indices(pool: int, batch: int, iterations: int, offset: int = 0) -> torch.Tensor:
    """(iterations, batch) sample indices of a shuffled, drop-last loader over ``pool`` samples, restarted
    with a new permutation whenever it runs out (as the official training loop), plus ``offset``."""
    per_epoch = pool // batch
    epochs = math.ceil(iterations / per_epoch)
    order = torch.cat([torch.randperm(pool)[: per_epoch * batch] for _ in range(epochs)])
    return order[: iterations * batch].view(iterations, batch) + offset


@register_method
@dataclass
class CrossModalLinearProbe(Method):
    name = "cross-modal-linear-probe"
    setting = "few-shot"
    label_free = False
    summary = "Linear probe trained on images and class texts together (official AdamW recipe and grid)"
    paper = "Lin et al., Multimodality Helps Unimodality (CVPR 2023, arXiv:2301.06267)"
    code = "https://github.com/linzhiqiu/cross_modal_adaptation"
    faithfulness = "linear-probes"

    iterations: int = 12800
    warmup: int = 50
    warmup_lr: float = 1e-5
    eval_every: int = 100
    init: Literal["random", "zeroshot"] = "random"  # "random" (the script that reproduces the paper) or "zeroshot"
    augment: bool = True  # train on the support images' stored views too

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        require_labelled(self.name, support, validation)
        assert support is not None and validation is not None and validation.labels is not None
        images, image_labels = training_samples(support, self.augment)
        _, text = support.normalised()
        prompts = support.text_all if support.text_all is not None else support.text_features[None]
        texts = F.normalize(prompts.float(), dim=-1).reshape(-1, text.shape[1])  # (P·C, D), class c at rows ≡ c
        text_labels = torch.arange(text.shape[0], device=text.device).repeat(prompts.shape[0])
        samples, labels = torch.cat([images, texts]), torch.cat([image_labels, text_labels])
        grid = [(lr, wd, b) for lr, wd, b in CROSS_MODAL_GRID if b // 2 < len(texts) and b - b // 2 < len(images)]
        if not grid:
            raise ClipAdaptError(f"{self.name}: too few samples for the smallest batch (8)")
        accs, steps, heads = self._train(samples, labels, len(images), text, grid, validation)
        best_acc, best_step, best_heads = accs.tolist(), steps.tolist(), list(heads)  # the one wait for the device
        pick, val_acc = search(range(len(grid)), lambda g: best_acc[g])
        lr, weight_decay, batch = grid[pick]
        hparams = {
            **self.hparams(), "lr": lr, "weight_decay": weight_decay, "batch_size": batch,
            "best_iteration": best_step[pick], "validation_acc1": val_acc,
            "augmentation": augmentation(support, self.augment), "text_samples": len(texts),
        }  # fmt: skip
        classifier = Classifier(best_heads[pick], target.class_names, 100.0, method=self.name, hparams=hparams)
        return Fit(classifier)

    def _train(
        self, samples: torch.Tensor, labels: torch.Tensor, n_images: int, text: torch.Tensor,
        grid: list[tuple[float, float, int]], validation: FeatureSet,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """Train one head per grid point at once, as one (G, C, D) tensor (their losses add, their updates are
        separate); returns, per grid point, the best validation top-1 (G,), its iteration (G,) and its head
        (G, C, D), on the device.

        The batches are drawn on the CPU (seeded by the runner; every device draws the same) and moved once;
        the best heads are kept on the device, so the loop never waits for it."""
        n_texts = len(samples) - n_images
        dim = text.shape[1]
        widest = max(b for _, _, b in grid)
        heads = torch.stack([  # a random start is drawn on the CPU, so that every device starts the same
            text.clone() if self.init == "zeroshot" else torch.empty(text.shape).uniform_(-(dim**-0.5), dim**-0.5)
            for _ in grid
        ]).to(text.device)  # fmt: skip
        # every grid point's batches, padded to the widest batch: (G, iterations, widest) indices and a mask
        rows = torch.zeros(len(grid), self.iterations, widest, dtype=torch.long)
        weight = torch.zeros(len(grid), 1, widest)  # 1/B on a grid point's own rows: its mean cross-entropy
        for g, (_, _, b) in enumerate(grid):
            images = loader_indices(n_images, b - b // 2, self.iterations)
            texts = loader_indices(n_texts, b // 2, self.iterations, offset=n_images)
            rows[g, :, :b] = torch.cat([images, texts], dim=1)
            weight[g, 0, :b] = 1.0 / b
        device = samples.device
        rows, weight = rows.to(device), weight.to(device)
        rates = torch.stack([warmup_then_cosine(self.iterations, self.warmup, lr, self.warmup_lr) for lr, _, _ in grid])
        rates = rates.to(device, heads.dtype)  # as GridAdamW would cast them at every step
        decay = torch.tensor([wd for _, wd, _ in grid], dtype=heads.dtype, device=device)
        optimiser = GridAdamW(heads)
        x_val, _ = validation.normalised()
        best_acc = heads.new_full((len(grid),), -1.0)
        best_step = torch.zeros(len(grid), dtype=torch.long, device=device)
        best_heads = heads.clone()
        for step in progress(range(self.iterations), desc=self.name, unit="it"):
            heads.requires_grad_(True)
            with torch.enable_grad():
                batch = samples[rows[:, step]]  # (G, widest, D)
                logits = 100.0 * torch.bmm(batch, heads.transpose(1, 2))  # (G, widest, C)
                ce = F.cross_entropy(logits.transpose(1, 2), labels[rows[:, step]], reduction="none")  # (G, widest)
                loss = (ce * weight[:, 0]).sum()
                (grad,) = torch.autograd.grad(loss, heads)
            heads = optimiser.step(heads.detach(), grad, rates[:, step], decay)
            if step % self.eval_every == 0:
                accs = (torch.einsum("nd,gcd->gnc", x_val, heads).argmax(2) == validation.labels).float().mean(1)
                better = accs > best_acc  # (G,): strictly better, so the first best is kept on ties
                best_acc = torch.where(better, accs, best_acc)
                best_step = torch.where(better, step, best_step)
                best_heads = torch.where(better[:, None, None], heads, best_heads)
        return best_acc, best_step, best_heads


class GridAdamW:
    """torch.optim.AdamW's update (β = (0.9, 0.999), ε = 1e-8, decoupled weight decay), applied to G
    stacked parameters at once with one learning rate and one weight decay each (torch's optimiser takes a
    scalar learning rate per parameter group, and G separate groups cost G× the steps)."""

    def __init__(self, params: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
        self.betas, self.eps, self.steps = betas, eps, 0

    @torch.no_grad()
    def step(
        self, params: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor, weight_decay: torch.Tensor
    ) -> torch.Tensor:
        """(G, ...) params and grads, (G,) lr and weight decay → the updated params (in place)."""
        self.steps += 1
        beta1, beta2 = self.betas
        shape = (-1,) + (1,) * (params.dim() - 1)
        lr, weight_decay = lr.to(params.dtype).view(shape), weight_decay.to(params.dtype).view(shape)
        params.mul_(1 - lr * weight_decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**self.steps)).add_(self.eps)
        return params.sub_(lr / (1 - beta1**self.steps) * self.exp_avg / denom)
