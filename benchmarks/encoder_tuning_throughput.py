"""ReCLIP's and FAIR's epochs against bare loops doing the same model work on images already in memory.

An epoch of the method reads and decodes the images (loader processes), augments them (FAIR's strong
view), labels them and trains. Its bare loop does the same model work, batch for batch, on tensors already
preprocessed and on the device: ReCLIP, a no-grad pass over every image, then per batch a forward and
backward of the vision tower and of the text tower (its class texts); FAIR, per batch a no-grad forward of
the weak view and of its crops, then a forward and backward of the strong view (augmented once,
beforehand). The ratio epoch / bare shows what the data path and per-step host work cost (goal ≤ 1.5).
The method's epoch is measured as fit(epochs = 2) − fit(epochs = 1), so set-up and the final pass cancel.

    python benchmarks/encoder_tuning_throughput.py [--images 512] [--model toyclip] [--device cpu]
    python benchmarks/encoder_tuning_throughput.py --device cuda --model ViT-B-32 --pretrained random --images 2048
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from extraction_throughput import make_jpegs

from clipadapt.backbones import load_backbone
from clipadapt.data import open_source
from clipadapt.features import FeatureStore, extract
from clipadapt.kernels.crops import random_crops
from clipadapt.methods import build_method
from clipadapt.methods.encoder import class_text_features, tuning
from clipadapt.methods.fair import strong_augmentation
from clipadapt.progress import set_quiet
from clipadapt.runtime import autocast


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_reclip_epoch(backbone, pixels: list[torch.Tensor], sentences: list[list[str]]) -> float:
    device = backbone.device
    with tuning(backbone, ["vision", "text"]) as params:
        optimiser = torch.optim.SGD(params, lr=1e-5)
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            for batch in pixels:
                backbone.encode_images(batch)
        first = [s[:1] for s in sentences]
        for batch in pixels:
            with autocast(device, backbone.precision):
                v = F.normalize(backbone.image_forward(batch).float(), dim=-1)
                t = class_text_features(backbone, first)
                loss = (v @ t.T).logsumexp(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        synchronize(device)
        return time.perf_counter() - start


def bare_fair_epoch(backbone, weak: list[torch.Tensor], strong: list[torch.Tensor], crops: int) -> float:
    device = backbone.device
    generator = torch.Generator(device=device).manual_seed(0)
    anchors = torch.nn.Parameter(torch.randn(10, backbone.encode_texts(["x"]).shape[1], device=device))
    with tuning(backbone, ["vision"]) as params:
        optimiser = torch.optim.AdamW([*params, anchors], lr=1e-5)
        synchronize(device)
        start = time.perf_counter()
        for w, s in zip(weak, strong, strict=True):
            with torch.no_grad(), autocast(device, backbone.precision):
                backbone.image_forward_with_cls(w)
                backbone.image_forward_with_cls(random_crops(w, crops, (0.5, 0.9), generator).flatten(0, 1))
            with autocast(device, backbone.precision):
                logits = F.normalize(backbone.image_forward(s).float(), dim=-1) @ F.normalize(anchors, dim=-1).T
                loss = logits.logsumexp(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        synchronize(device)
        return time.perf_counter() - start


def method_epoch(features, name: str, hparams: dict) -> float:
    times = []
    for epochs in (1, 2):
        method = build_method(name, {**hparams, "epochs": epochs})
        torch.manual_seed(0)
        start = time.perf_counter()
        method.fit(features.without_labels())
        times.append(time.perf_counter() - start)
    return times[1] - times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--model", default="toyclip")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num_workers", type=int, default=None)
    parser.add_argument("--crops", type=int, default=16)
    args = parser.parse_args()
    set_quiet(True)
    backbone = load_backbone(args.model, args.pretrained, device=args.device)
    device = backbone.device
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_jpegs(root, args.images, classes=10)
        source = open_source(str(root))
        features = extract(backbone, source, ["a photo of a {c}."], FeatureStore(Path(tmp) / "cache"),
                           num_workers=args.num_workers)  # fmt: skip
        images = [source.load(i) for i in range(len(source))]
        strong_view = strong_augmentation(backbone)

        def batches(transform, size: int) -> list[torch.Tensor]:
            stacked = torch.stack([transform(image) for image in images]).to(device)
            return list(stacked.split(size))

        print(f"{args.model} on {device}, {args.images} JPEGs (500 x 375), "
              f"{features.encoder.num_workers} loader processes")  # fmt: skip
        reclip_batch = 64
        bare = bare_reclip_epoch(backbone, batches(backbone.preprocess, reclip_batch), features.encoder.sentences)
        epoch = method_epoch(features, "reclip", {"k": 10, "batch_size": reclip_batch})
        print(f"reclip: epoch {epoch:7.2f} s, bare loop {bare:7.2f} s, ratio {epoch / bare:.2f}")
        fair_batch = 32
        bare = bare_fair_epoch(backbone, batches(backbone.preprocess, fair_batch), batches(strong_view, fair_batch),
                               args.crops)  # fmt: skip
        epoch = method_epoch(features, "fair", {"crops": args.crops, "batch_size": fair_batch})
        print(f"fair:   epoch {epoch:7.2f} s, bare loop {bare:7.2f} s, ratio {epoch / bare:.2f}")


if __name__ == "__main__":
    main()
