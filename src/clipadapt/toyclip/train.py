"""Train ToyCLIP on the world's source domain with the symmetric contrastive loss (CPU, about half an hour).

    python -m clipadapt.toyclip.train --out src/clipadapt/resources/toyclip

writes ``toyclip.safetensors``, ``config.json``, ``report.json`` and ``CARD.md`` (how the weights were
made; zero-shot and oracle linear-probe accuracy on every domain; how much of the zero-shot accuracy
survives crops and flips).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import RandAugment
from torchvision.transforms.v2.functional import to_pil_image

from clipadapt.data.augment import strong_rand_augment, strong_view
from clipadapt.data.prompts import expand_prompts
from clipadapt.io import atomic_path, write_json
from clipadapt.kernels.crops import random_crops, random_resized_crops
from clipadapt.kernels.logistic import fit_logistic
from clipadapt.kernels.metrics import clip_statistics
from clipadapt.progress import progress
from clipadapt.runtime import seeded_randomness
from clipadapt.toyclip.model import CONFIG, WEIGHTS, ToyClip, ToyClipConfig, WordTokenizer, load, save
from clipadapt.world import (
    CLASSES,
    DOMAINS,
    TARGET_DOMAINS,
    WORLD_TEMPLATES,
    caption,
    domain_imbalance,
    make_domain,
    random_scene,
    render,
)
from clipadapt.world.captions import CAPTION_TEMPLATES, PARTIAL_TEMPLATES, vocabulary

REPORT = "report.json"
TRAIN_CROP_AREA = (0.25, 1.0)  # random resized crops while training: fraction of the image area kept
TRAIN_STRONG_SHARE = 0.0  # share of each batch also given RandAugment (see augment), as web images vary
TRAIN_WEB_SHARE = 0.0  # share of the training scenes drawn in a target domain's style, as CLIP's web images
# hold a few sketches, paintings and night shots among the photos
RAND_AUGMENT_GROUP = 16  # torchvision's RandAugment draws one pair of operations per group of this many images
RAND_AUGMENT_POLICIES = ("torchvision", "timm")  # torchvision's (2 ops, m9) or the strong view's own (timm)
CROP_SIDE = (0.5, 0.9)  # crop retention is measured on square crops of this fraction of the side (FAIR's)


def to_bytes(images: list) -> torch.Tensor:
    """PIL images (all of one size) → (N, 3, H, W) uint8."""
    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images])).permute(0, 3, 1, 2)


def normalise(pixels: torch.Tensor, cfg: ToyClipConfig) -> torch.Tensor:
    """(N, 3, H, W) uint8 or float in [0, 255] → the model's normalised float input."""
    mean = torch.tensor(cfg.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std).view(1, 3, 1, 1)
    return (pixels.float() / 255 - mean) / std


def to_pixels(images: list, cfg: ToyClipConfig) -> torch.Tensor:
    """PIL images (already image_size) → (N, 3, H, W) normalised float tensor."""
    return normalise(to_bytes(images), cfg)


def augment(
    pixels: torch.Tensor,
    generator: torch.Generator,
    area: tuple[float, float],
    strong_share: float = 0.0,
    policy: str = "torchvision",
) -> torch.Tensor:
    """(B, 3, S, S) uint8 → float in [0, 255]: a random resized crop of each image (``area`` of it kept),
    mirrored with probability ½; a random ``strong_share`` of the crops then get RandAugment: ``policy``
    ``"torchvision"`` is torchvision's (2 operations of magnitude 9, drawn per group of
    ``RAND_AUGMENT_GROUP`` images, from torch's global generator), ``"timm"`` the strong view's own
    (``rand-m9-mstd0.5-inc1``, :func:`clipadapt.data.augment.strong_rand_augment`, per image, from Python's
    and NumPy's global generators)."""
    crops = random_resized_crops(pixels.float(), area, generator)
    flip = torch.rand(len(crops), generator=generator) < 0.5
    crops = torch.where(flip[:, None, None, None], crops.flip(-1), crops)
    if policy not in RAND_AUGMENT_POLICIES:
        raise ValueError(f"unknown RandAugment policy {policy!r}; known: {', '.join(RAND_AUGMENT_POLICIES)}")
    if strong_share <= 0:
        return crops  # no draw from the generator, so that training without RandAugment is as it was
    strong = torch.nonzero(torch.rand(len(crops), generator=generator) < strong_share).squeeze(1)
    if len(strong):
        as_bytes = crops[strong].round().clamp(0, 255).to(torch.uint8)
        if policy == "timm":
            rand_augment = strong_rand_augment(pixels.shape[-1])
            crops[strong] = to_bytes([rand_augment(to_pil_image(image)) for image in as_bytes]).float()
        else:
            rand_augment = RandAugment(num_ops=2, magnitude=9)
            crops[strong] = torch.cat([rand_augment(group) for group in as_bytes.split(RAND_AUGMENT_GROUP)]).float()
    return crops


def cut_mix(
    crops: torch.Tensor, share: float, generator: torch.Generator, max_area: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix for captions: (B, 3, S, S) crops → the crops where, for a random ``share`` of them, a box of
    another random crop of the batch is pasted in at the same place (box area uniform in 0–``max_area`` of
    the image before its edges are rounded to pixels, centred anywhere, clipped to it), and the (B, B)
    shares of each image's area that show each caption's scene (rows sum to 1), the targets of
    :meth:`ToyClip.contrastive_loss`."""
    count, side = len(crops), crops.shape[-1]
    mixed = torch.nonzero(torch.rand(count, generator=generator) < share).squeeze(1)
    partners = torch.randint(count - 1, (len(mixed),), generator=generator)
    partners = partners + (partners >= mixed).long()  # another crop than itself
    sides = (torch.rand(len(mixed), generator=generator) * max_area).sqrt() * side
    centres = torch.rand(len(mixed), 2, generator=generator) * side
    out, shares = crops.clone(), torch.eye(count)
    for i, j, box, (cy, cx) in zip(mixed.tolist(), partners.tolist(), sides.tolist(), centres.tolist(), strict=True):
        y0, y1 = max(0, round(cy - box / 2)), min(side, round(cy + box / 2))
        x0, x1 = max(0, round(cx - box / 2)), min(side, round(cx + box / 2))
        out[i, :, y0:y1, x0:x1] = crops[j, :, y0:y1, x0:x1]
        area = max(0, y1 - y0) * max(0, x1 - x0) / side**2
        shares[i, i] -= area
        shares[i, j] += area
    return out, shares


def train(
    cfg: ToyClipConfig,
    images: int = 48000,
    epochs: int = 24,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    seed: int = 0,
    strong_share: float = TRAIN_STRONG_SHARE,
    web_share: float = TRAIN_WEB_SHARE,
    partial_captions: bool = False,
    caption_noise: float = 0.0,
    rand_augment: str = "torchvision",
    cutmix: float = 0.0,
    crop_area: tuple[float, float] = TRAIN_CROP_AREA,
) -> ToyClip:
    """Contrastive training on ``images`` scenes, rendered once: in the source domain, or for a random
    ``web_share`` of them in a target domain's style (drawn uniformly); every epoch re-draws each image's
    random resized crop and flip, its RandAugment (for a ``strong_share`` of each batch, by the
    ``rand_augment`` policy of :func:`augment`; for a ``cutmix`` share, a box of another image with the
    targets shared by area, :func:`cut_mix`), and its caption
    (among ``caption_templates(partial_captions)``; for a random ``caption_noise`` share of the images, a
    caption of another random scene, as many web captions do not describe their image)."""
    torch.manual_seed(seed)
    random.seed(seed)  # the timm policy draws from Python's and NumPy's global generators
    np.random.seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(images)]
    styles = ["source"] * images
    if web_share > 0:
        for i in np.flatnonzero(rng.random(images) < web_share):
            styles[i] = TARGET_DOMAINS[rng.integers(len(TARGET_DOMAINS))]
    rendered = progress(zip(scenes, styles, strict=True), "rendering", total=images, unit="image")
    pixels = to_bytes([render(scene, style, rng, cfg.image_size) for scene, style in rendered])
    model = ToyClip(cfg)
    tokenizer = WordTokenizer(cfg.vocab, cfg.context_length)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0}], lr=lr
    )
    steps = epochs * (images // batch_size)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    templates = caption_templates(partial_captions)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(images, generator=generator)
        described = scenes
        if caption_noise > 0:
            strangers = rng.integers(images, size=images)
            described = [scenes[j] if u < caption_noise else s
                         for s, j, u in zip(scenes, strangers, rng.random(images), strict=True)]  # fmt: skip
        tokens = tokenizer([caption(s, rng, templates) for s in described])
        bar = progress(range(images // batch_size), desc=f"epoch {epoch + 1}/{epochs}", unit="step")
        for step in bar:
            idx = order[step * batch_size : (step + 1) * batch_size]
            batch, shares = augment(pixels[idx], generator, crop_area, strong_share, rand_augment), None
            if cutmix > 0:
                batch, shares = cut_mix(batch, cutmix, generator)
            loss = model.contrastive_loss(normalise(batch, cfg), tokens[idx], shares)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


def caption_templates(partial_captions: bool) -> tuple[str, ...]:
    """The training captions' phrasings: the world's, and with ``partial_captions`` those that leave the
    fill or the shape out (:data:`clipadapt.world.captions.PARTIAL_TEMPLATES`)."""
    return (*CAPTION_TEMPLATES, *PARTIAL_TEMPLATES) if partial_captions else CAPTION_TEMPLATES


@torch.no_grad()
def zero_shot_prototypes(model: ToyClip) -> torch.Tensor:
    """(C, D) normalised prompt-ensemble text prototypes of the world's classes (``WORLD_TEMPLATES``)."""
    cfg = model.config
    tokenizer = WordTokenizer(cfg.vocab, cfg.context_length)
    prompts = expand_prompts(list(CLASSES), WORLD_TEMPLATES)
    text = F.normalize(model.text(tokenizer([p for per in prompts for p in per])), dim=-1)
    return F.normalize(text.view(len(CLASSES), len(WORLD_TEMPLATES), -1).mean(1), dim=-1)


@torch.no_grad()
def embed(model: ToyClip, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) normalised pixels → (N, D) normalised image features, 512 images at a time."""
    return torch.cat([F.normalize(model.visual(chunk), dim=-1) for chunk in pixels.split(512)])


@torch.no_grad()
def strong_views(images: list, cfg: ToyClipConfig, seed: int) -> torch.Tensor:
    """One strong view (FAIR's, :func:`clipadapt.data.augment.strong_view`) of each PIL image → (N, 3, S, S)
    normalised pixels, reproducible from ``seed``."""
    with seeded_randomness(seed):
        view = strong_view(cfg.image_size)
        return to_pixels([view(image) for image in images], cfg)


def top1(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> float:
    """Zero-shot top-1 of (N, D) normalised features against (C, D) prototypes."""
    return float(((features @ prototypes.T).argmax(1) == labels).double().mean())


@torch.no_grad()
def domain_report(model: ToyClip, n: int = 4800, seed: int = 1, crops: int = 2) -> dict:
    """World-level numbers of ``model`` on ``n`` fresh images per domain (world seed ``seed``): per domain
    zero-shot and oracle linear-probe top-1, and zero-shot's calibration at CLIP's logit scale 100
    (``calibration_gap``: mean max probability − top-1), ``top_cosine`` (mean cosine of an image to its
    nearest prototype) and ``top_margin`` (mean top-1 − top-2 cosine); ``prototype_cosine``, the mean cosine
    between two classes' prototypes (real CLIP on WHU-RS19: 0.78–0.86); on the source domain the share of
    zero-shot top-1 that survives ``crops`` random square crops of 50–90 % of the side per image
    (``crop_retention``), a horizontal flip (``flip_retention``) and FAIR's strong view
    (``strong_view_retention``)."""
    cfg = model.config
    prototypes = zero_shot_prototypes(model)
    report: dict = {"classes": len(CLASSES), "chance": 1 / len(CLASSES), "images": n, "seed": seed,
                    "crops": crops, "target_domains": list(TARGET_DOMAINS), "embed_dim": cfg.embed_dim,
                    "logit_scale": float(model.logit_scale.exp()),
                    "prototype_cosine": mean_off_diagonal(prototypes @ prototypes.T)}  # fmt: skip
    for domain in DOMAINS:
        sample = make_domain(domain, n, seed=seed, size=cfg.image_size)
        pixels, labels = to_pixels(sample.images, cfg), torch.from_numpy(sample.labels)
        report[domain] = {**feature_numbers(embed(model, pixels), labels, prototypes),
                          "imbalance": domain_imbalance(domain)}  # fmt: skip
        if domain == "source":
            full = report[domain]["zero_shot"]
            cut = random_crops(pixels, crops, CROP_SIDE, torch.Generator().manual_seed(seed)).flatten(0, 1)
            report["crop_zero_shot"] = top1(embed(model, cut), labels.repeat_interleave(crops), prototypes)
            report["crop_retention"] = report["crop_zero_shot"] / full
            report["flip_retention"] = top1(embed(model, pixels.flip(-1)), labels, prototypes) / full
            strong = embed(model, strong_views(sample.images, cfg, seed))
            report["strong_view_zero_shot"] = top1(strong, labels, prototypes)
            report["strong_view_retention"] = report["strong_view_zero_shot"] / full
    return report


def feature_numbers(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> dict[str, float]:
    """A domain's world-level numbers from its (N, D) unit features, (N,) labels and (C, D) prototypes:
    ``zero_shot``, the oracle ``linear_probe``, ``calibration_gap``, ``top_cosine`` and ``top_margin``
    (:func:`clipadapt.kernels.metrics.clip_statistics`)."""
    statistics = clip_statistics(features @ prototypes.T, labels)
    keys = ("calibration_gap", "top_cosine", "top_margin")
    return {"zero_shot": statistics["zero_shot"], "linear_probe": linear_probe(features, labels),
            **{k: statistics[k] for k in keys}}  # fmt: skip


def mean_off_diagonal(matrix: torch.Tensor) -> float:
    """Mean of the off-diagonal entries of a (C, C) matrix."""
    return float(matrix[~torch.eye(len(matrix), dtype=torch.bool)].double().mean())


def linear_probe(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Oracle top-1: logistic regression fitted on a random half of the labelled features, scored on the
    other half; the L2 strength is chosen on a validation fifth of the fitting half."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    fit, test = order[: len(order) // 2], order[len(order) // 2 :]
    n_val = max(1, len(fit) // 5)
    val, train_rows = fit[:n_val], fit[n_val:]
    start = torch.zeros(int(labels.max()) + 1, features.shape[1]), torch.zeros(int(labels.max()) + 1)

    def accuracy(l2: float, rows: torch.Tensor, scored: torch.Tensor) -> float:
        w, b = fit_logistic(features[rows], labels[rows], *start, penalty=2 * l2, evaluations=500)
        return float((torch.addmm(b, features[scored], w.T).argmax(1) == labels[scored]).double().mean())

    best = max((1e-2, 1e-3, 1e-4, 1e-5), key=lambda l2: accuracy(l2, train_rows, val))
    return accuracy(best, fit, test)


def write_card(out: Path, report: dict, cfg: ToyClipConfig) -> None:
    """``CARD.md`` and ``report.json`` in ``out`` from a :func:`domain_report` with its ``training`` entry."""
    run = report["training"]
    size_mb = (out / WEIGHTS).stat().st_size / 2**20
    rows = "\n".join(
        f"| {d}{'' if d in report['target_domains'] else ' (training domain)'} | {report[d]['imbalance']:g} | "
        f"{report[d]['zero_shot'] * 100:.1f} | {report[d]['linear_probe'] * 100:.1f} | "
        f"{(report[d]['linear_probe'] - report[d]['zero_shot']) * 100:+.1f} | "
        f"{report[d]['calibration_gap']:+.3f} | {report[d]['top_cosine']:.3f} | {report[d]['top_margin']:.3f} |"
        for d in DOMAINS
    )
    scale = f"fixed at {cfg.logit_scale:g}" if cfg.logit_scale else "learned from 1/0.07, clamped at 100"
    web, strong = run.get("web_share", 0.0), run.get("strong_share", 0.0)
    styles = (f"{100 * (1 - web):g} % are drawn in the source domain (a light background, plain, textured, or with a "
              f"few soft blobs) and {100 * web:g} % in a target domain's style, drawn uniformly, as web images hold a "
              "few sketches, paintings and night shots among the photos" if web else "All are drawn in the source "
              "domain (a light background, plain, textured, or with a few soft blobs)")  # fmt: skip
    phrasings = len(caption_templates(run.get("partial_captions", False)))
    partial = (f", {len(PARTIAL_TEMPLATES)} of them without the fill or the shape, as web captions leave out what a "
               "fine-grained class turns on" if run.get("partial_captions") else "")  # fmt: skip
    noise = run.get("caption_noise", 0.0)
    mismatched = (f"; each epoch {100 * noise:g} % of the images get another random scene's caption, as many web "
                  "captions do not describe their image" if noise else "")  # fmt: skip
    policy = ("the strong view's own RandAugment (timm's rand-m9-mstd0.5-inc1)" if run.get("rand_augment") == "timm"
              else "RandAugment (torchvision's, 2 operations of magnitude 9)")  # fmt: skip
    randaugment = f"{policy} for {100 * strong:g} % of each batch, " if strong else ""
    mix = run.get("cutmix", 0.0)
    cutmix = (f"a box of another image of the batch pasted into {100 * mix:g} % of them (CutMix, the captions' "
              "targets shared by area), " if mix else "")  # fmt: skip
    text = f"""# ToyCLIP

A small CLIP trained by clipadapt on its own procedural world (`clipadapt.world`), so that every method can
run offline on real images. Weights: `{WEIGHTS}` ({size_mb:.1f} MB), architecture: `{CONFIG}`, numbers:
`{REPORT}`.

- **Data**: {run["images"]} scenes, {cfg.image_size}×{cfg.image_size} pixels: one of {len(CLASSES)} classes, a
  shape (8) with a fill (solid, striped, spotted), so that every class has fine-grained siblings differing
  in one attribute; nuisance colour, accent colour, size, position, rotation, stripe and spot geometry.
  {styles}. Each image is rendered once; every epoch re-draws its random resized crop (area
  {TRAIN_CROP_AREA[0]:g}–{TRAIN_CROP_AREA[1]:g}, aspect 3/4–4/3), its horizontal flip (p = ½), {randaugment}{cutmix}and
  its caption, from {phrasings} phrasings with synonyms for the fills{partial}{mismatched}.
- **Model**: pre-LayerNorm ViT image tower (patch {cfg.patch_size}, width {cfg.vision_width},
  {cfg.vision_layers} layers, [CLS] pooling) and causal text transformer (width {cfg.text_width},
  {cfg.text_layers} layers, word-level vocabulary of {len(cfg.vocab)} words, <eot> pooling), projections to
  {cfg.embed_dim} dimensions, logit scale {scale} (CLIP's ends at 100).
- **Training**: symmetric contrastive loss, AdamW (lr {run["lr"]}, weight decay {run["weight_decay"]}),
  batch {run["batch_size"]}, {run["epochs"]} epochs, linear warm-up then cosine decay, seed {run["seed"]};
  {run["seconds"] / 60:.1f} minutes on {run["threads"]} CPU threads.
- **Rebuild**: `{run["command"]}` (`python benchmarks/reproduce_toyclip.py` retrains and compares;
  `python -m clipadapt.toyclip.train --evaluate_only` re-measures these numbers on the committed weights).

Top-1 (%) on {report["images"]} fresh images per domain (world seed {report["seed"]}). Zero-shot uses the
prompt ensemble {WORLD_TEMPLATES}. The linear probe is an oracle: a logistic regression fitted on half of
the domain's labelled features and scored on the other half; the gap between the two is what adaptation can
recover. Chance is {100 * report["chance"]:.1f} %. Imbalance: largest/smallest class ratio of the domain's
images. Calibration at CLIP's logit scale 100: mean max probability − top-1 (real CLIP on WHU-RS19: −0.03
to −0.11); top cosine: mean cosine of an image to its nearest class prototype (real CLIP: 0.22–0.34); top
margin: mean cosine of the nearest prototype minus the second's (real CLIP: 0.017–0.030). Two classes'
prototypes have a mean cosine of {report["prototype_cosine"]:.3f} (real CLIP: 0.78–0.86).

| domain | imbalance | zero-shot | linear probe (oracle) | gap | calibration gap | top cosine | top margin |
|---|---|---|---|---|---|---|---|
{rows}

**Crops, flips and strong views** (source domain): zero-shot top-1 on {report["crops"]} random square crops
of {CROP_SIDE[0]:g}–{CROP_SIDE[1]:g} of the side per image (anywhere in the image, resized back, as FAIR cuts
them) is {report["crop_zero_shot"] * 100:.1f} %, a crop retention of {report["crop_retention"]:.3f} of the
full images' top-1; on mirrored images the retention is {report["flip_retention"]:.3f}; on FAIR's strong view
(RandomResizedCrop 0.3–1, flip, RandAugment m9) it is {report["strong_view_zero_shot"] * 100:.1f} %, a
retention of {report["strong_view_retention"]:.3f}.
"""
    with atomic_path(out / "CARD.md") as tmp:
        tmp.write_text(text)
    write_json(out / REPORT, report)


ARCHITECTURE = ("image_size", "patch_size", "vision_width", "vision_layers", "text_width", "text_layers", "embed_dim")
TRAINING = (
    "images",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "seed",
    "strong_share",
    "web_share",
    "partial_captions",
    "caption_noise",
    "rand_augment",
    "cutmix",
)


def retraining_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command that retrains these weights into the bundled folder: the options that shape the weights
    (architecture and training), where they differ from the defaults; where to write and what to measure
    are left out, as ``--evaluate_only`` measures again."""
    shaping = (*ARCHITECTURE, *TRAINING, "logit_scale")
    changed = [f"--{k}" if getattr(args, k) is True else f"--{k} {getattr(args, k)}"
               for k in shaping if getattr(args, k) != parser.get_default(k)]  # fmt: skip
    return " ".join(["python -m clipadapt.toyclip.train", *changed])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train ToyCLIP on the procedural world's source domain.")
    parser.add_argument("--out", default="src/clipadapt/resources/toyclip")
    parser.add_argument("--images", type=int, default=48000)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight_decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strong_share", type=float, default=TRAIN_STRONG_SHARE,
                        help="share of each batch given RandAugment besides the crop and flip")  # fmt: skip
    parser.add_argument("--web_share", type=float, default=TRAIN_WEB_SHARE,
                        help="share of the training scenes drawn in a target domain's style")  # fmt: skip
    parser.add_argument("--partial_captions", action="store_true",
                        help="add phrasings that leave the fill or the shape out, as web captions do")  # fmt: skip
    parser.add_argument("--caption_noise", type=float, default=0.0,
                        help="share of the images captioned with another random scene's caption")  # fmt: skip
    parser.add_argument("--rand_augment", choices=RAND_AUGMENT_POLICIES, default="torchvision",
                        help="RandAugment of --strong_share: torchvision's, or the strong view's (timm)")  # fmt: skip
    parser.add_argument("--cutmix", type=float, default=0.0,
                        help="share of each batch given a box of another image (CutMix, targets by area)")  # fmt: skip
    parser.add_argument("--eval_images", type=int, default=4800)
    parser.add_argument("--eval_seed", type=int, default=1, help="world seed of the card's evaluation images")
    parser.add_argument("--evaluate_only", action="store_true",
                        help="keep the weights in --out, measure them again and rewrite the card")  # fmt: skip
    defaults = ToyClipConfig()
    for name in ARCHITECTURE:
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--logit_scale", type=float, default=defaults.logit_scale,
                        help="0: learned from 1/0.07, clamped at 100 (as CLIP); else fixed at this value")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.evaluate_only:
        model = load(out)
        training = json.loads((out / REPORT).read_text())["training"]
    else:
        cfg = ToyClipConfig(
            vocab=vocabulary(caption_templates(args.partial_captions)),
            logit_scale=args.logit_scale,
            **{k: getattr(args, k) for k in ARCHITECTURE},
        )
        start = time.perf_counter()
        model = train(cfg, *(getattr(args, k) for k in TRAINING))
        training = {"seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
                    "command": retraining_command(parser, args), **{k: getattr(args, k) for k in TRAINING}}  # fmt: skip
        save(model, out)
    report = {**domain_report(model, args.eval_images, args.eval_seed), "training": training}
    write_card(out, report, model.config)
    for domain in DOMAINS:
        row = report[domain]
        print(f"{domain:10s} zero-shot {row['zero_shot'] * 100:5.1f}  linear probe {row['linear_probe'] * 100:5.1f}  "
              f"calibration gap {row['calibration_gap']:+.3f}  top cosine {row['top_cosine']:.3f}  "
              f"top margin {row['top_margin']:.3f}")  # fmt: skip
    print(f"crop retention {report['crop_retention']:.3f}, flip retention {report['flip_retention']:.3f}, strong view "
          f"retention {report['strong_view_retention']:.3f}, logit scale {report['logit_scale']:.1f}")  # fmt: skip
    print(f"trained in {training['seconds']:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
