"""Backbones: open_clip, Hugging Face transformers, and the project's own small CLIP."""

from __future__ import annotations

import os

import torch

from clipadapt.backbones.base import Backbone, describe_transform
from clipadapt.runtime import resolve_device

HF_PREFIX = "hf:"


def load_backbone(
    model: str,
    pretrained: str | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    cache_dir: str | None = None,
) -> Backbone:
    """Load a backbone by name.

    - ``toyclip``: the small CLIP trained by clipadapt (bundled weights; ``pretrained`` may name another folder).
    - ``hf:<repo-or-folder>``, or a folder holding a transformers ``config.json``: Hugging Face transformers.
    - anything else: an open_clip architecture (``ViT-B-32``) with ``pretrained`` a tag (``openai``),
      a checkpoint path, or ``random``.
    """
    dev = resolve_device(device)
    if model == "toyclip":
        from clipadapt.backbones.toyclip import ToyClipBackbone

        return ToyClipBackbone(pretrained, dev, precision)
    if model.startswith(HF_PREFIX) or os.path.isfile(os.path.join(model, "config.json")):
        from clipadapt.backbones.hf import HFClipBackbone

        return HFClipBackbone(model.removeprefix(HF_PREFIX), dev, precision, cache_dir)
    from clipadapt.backbones.openclip import OpenClipBackbone

    return OpenClipBackbone(model, pretrained, dev, precision, cache_dir)


def list_models() -> list[str]:
    """Known ``model:pretrained`` pairs of open_clip, plus how to name other kinds."""
    import open_clip

    pairs = [f"{arch} --pretrained {tag}" for arch, tag in open_clip.list_pretrained()]
    return ["toyclip  (clipadapt's own small CLIP, bundled; no --pretrained)", *pairs,
            "hf:<repo-or-folder>  (Hugging Face transformers CLIP/SigLIP)"]  # fmt: skip


__all__ = ["Backbone", "describe_transform", "list_models", "load_backbone"]
