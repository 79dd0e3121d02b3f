"""Hugging Face transformers CLIP-family models (``hf:<repo-or-path>``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import torch
from PIL import Image
from torch import nn

from clipadapt.backbones import hub
from clipadapt.backbones.base import Backbone, Tower, path_fingerprint
from clipadapt.errors import ClipAdaptError


def _embedding(output: object) -> torch.Tensor:
    """transformers ≥ 5 returns a model output whose ``pooler_output`` is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]


class HFImageTransform:
    """PIL image → (3, H, W) tensor with the model's own image processor (picklable for workers)."""

    def __init__(self, processor: object) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        cfg = self.processor.to_dict()  # type: ignore[attr-defined]
        keys = ("image_processor_type", "size", "crop_size", "resample", "image_mean", "image_std", "do_center_crop")
        return f"HFImageTransform({ {k: cfg.get(k) for k in keys} })"


class HFClipBackbone(Backbone):
    library = "transformers"

    def __init__(self, repo: str, device: torch.device, precision: str = "auto", cache_dir: str | None = None) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        if repo.startswith(("/", "./", "../", "~")) and not os.path.isdir(os.path.expanduser(repo)):
            raise ClipAdaptError(f"could not load transformers model {repo!r}: no such folder")
        guard = contextlib.nullcontext()
        if not os.path.isdir(repo) and not hub.can_download(hub.hub_url()):
            if not hub.hf_cached(repo, ("config.json",), cache_dir):
                raise hub.not_available(
                    f"transformers {repo!r}", "download them once where the network is reachable, or pass a local "
                    "folder saved with save_pretrained: --model hf:/path/to/folder",
                )  # fmt: skip
            guard = hub.hub_offline()
        try:
            with guard, hub.quiet_loaders():
                model = AutoModel.from_pretrained(repo, cache_dir=cache_dir)
                processor = AutoImageProcessor.from_pretrained(repo, cache_dir=cache_dir)
                tokenizer = AutoTokenizer.from_pretrained(repo, cache_dir=cache_dir)
        except (OSError, ValueError) as exc:
            raise ClipAdaptError(
                f"could not load transformers model {repo!r}: {str(exc).splitlines()[0]} "
                "(pass a local folder saved with save_pretrained)"
            ) from None
        if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
            raise ClipAdaptError(f"{repo!r} is a {type(model).__name__}, not a CLIP-style dual encoder")
        super().__init__(f"hf:{repo}", "", device, precision)
        self.repo = repo
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.preprocess = HFImageTransform(processor)
        text_cfg = getattr(model.config, "text_config", model.config)
        self.max_length = min(int(tokenizer.model_max_length), int(text_cfg.max_position_embeddings))

    def image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return _embedding(self.model.get_image_features(pixel_values=pixels))

    def text_forward(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        return _embedding(self.model.get_text_features(**batch))

    def tower(self, which: Tower) -> list[nn.Module]:
        if which == "vision":
            return [self.model.vision_model, self.model.visual_projection]
        return [self.model.text_model, self.model.text_projection]

    def cls_module(self) -> nn.Module | None:
        return getattr(self.model.vision_model, "post_layernorm", None)  # applied to the pooled [CLS]

    def set_grad_checkpointing(self, enable: bool = True) -> bool:
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            return False
        if enable:
            self.model.gradient_checkpointing_enable()
        else:
            self.model.gradient_checkpointing_disable()
        return True

    def weights_fingerprint(self) -> str:
        if os.path.isdir(self.repo):
            return path_fingerprint(self.repo)
        return str(getattr(self.model.config, "_commit_hash", None) or self.repo)
