"""ToyCLIP through the Backbone protocol (``--model toyclip``; no ``--pretrained`` needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision import transforms

from clipadapt.backbones.base import Backbone, Tower, path_fingerprint
from clipadapt.errors import ClipAdaptError

BUNDLED = Path(__file__).resolve().parents[1] / "resources" / "toyclip"
NAME = "toyclip"


class ToyClipBackbone(Backbone):
    library = "toyclip"

    def __init__(self, weights: str | None, device: torch.device, precision: str = "auto") -> None:
        from clipadapt.toyclip.model import WEIGHTS, WordTokenizer, load

        folder = Path(weights) if weights else BUNDLED
        if not (folder / WEIGHTS).is_file():
            what = "ToyCLIP has no random weights" if weights == "random" else f"no ToyCLIP weights in {weights!r}"
            raise ClipAdaptError(
                f"{what}: leave out --pretrained to use the bundled weights, or give --pretrained the folder of "
                "other trained ToyCLIP weights (toyclip.safetensors)"
            )
        super().__init__(NAME, "bundled" if folder == BUNDLED else str(folder), device, precision)
        self.folder = folder
        self.model = load(folder).to(device)
        cfg = self.model.config
        self.tokenizer = WordTokenizer(cfg.vocab, cfg.context_length)
        self.preprocess = transforms.Compose(
            [
                transforms.Resize(cfg.image_size, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(cfg.image_size),
                transforms.ToTensor(),
                transforms.Normalize(cfg.image_mean, cfg.image_std),
            ]
        )

    def image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual(pixels)

    def text_forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.text(self.tokenizer(list(texts)).to(self.device))

    def tower(self, which: Tower) -> list[nn.Module]:
        return [self.model.visual if which == "vision" else self.model.text]

    def cls_module(self) -> nn.Module:
        return self.model.visual.ln_post

    def weights_fingerprint(self) -> str:
        from clipadapt.toyclip.model import WEIGHTS

        return path_fingerprint(self.folder / WEIGHTS)
