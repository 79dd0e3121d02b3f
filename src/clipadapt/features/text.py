"""Class prototypes from prompts: templates or class descriptions through the text encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipadapt.backbones.base import Backbone
from clipadapt.data.prompts import Prompts, expand_prompts
from clipadapt.progress import progress


def encode_prompts(
    backbone: Backbone, classnames: list[str], prompts: Prompts, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode every class's prompts.

    Returns ``text_features`` (C, D), the normalised mean of each class's normalised prompt embeddings
    (CLIP's prompt ensemble), and, for templates, ``text_all`` (P, C, D) of normalised per-template
    embeddings (None for descriptions, whose count varies by class).
    """
    sentences = expand_prompts(classnames, prompts)
    flat = [s for per_class in sentences for s in per_class]
    chunks = []
    for start in progress(range(0, len(flat), batch_size), desc="encoding prompts", unit="batch"):
        chunks.append(backbone.encode_texts(flat[start : start + batch_size], batch_size=batch_size))
    embeddings = F.normalize(torch.cat(chunks).cpu(), dim=-1)
    counts = [len(s) for s in sentences]
    per_class = torch.split(embeddings, counts)
    text_features = F.normalize(torch.stack([e.mean(0) for e in per_class]), dim=-1)
    text_all = None
    if isinstance(prompts, list):
        text_all = embeddings.view(len(classnames), len(prompts), -1).transpose(0, 1).contiguous()
    return text_features, text_all
