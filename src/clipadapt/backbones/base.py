"""The one protocol every vision-language backbone follows."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import nn

from clipadapt.runtime import Precision, autocast, float32_matmuls, precision_policy

Tower = Literal["vision", "text"]


class Backbone(ABC):
    """A CLIP-style dual encoder: images and texts into one embedding space.

    Subclasses implement the raw forwards (gradients allowed, for methods that tune LayerNorms);
    :meth:`encode_images` and :meth:`encode_texts` are the no-grad, mixed-precision, batched entry points
    used for feature extraction. Outputs are float32 and *not* normalised.
    """

    library: str = ""

    def __init__(self, name: str, pretrained: str, device: torch.device, precision: str = "auto") -> None:
        self.name = name
        self.pretrained = pretrained
        self.device = device
        self.precision = precision

    # -- what subclasses provide -------------------------------------------------------------------
    model: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]

    @abstractmethod
    def image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed pixels → (B, D) image embeddings (gradients allowed)."""

    @abstractmethod
    def text_forward(self, texts: Sequence[str]) -> torch.Tensor:
        """T strings → (T, D) text embeddings (gradients allowed)."""

    @abstractmethod
    def tower(self, which: Tower) -> list[nn.Module]:
        """The modules that make up the vision or the text tower."""

    @abstractmethod
    def weights_fingerprint(self) -> str:
        """A string that changes whenever the weights would (tag, file size and time, …)."""

    def cls_module(self) -> nn.Module | None:
        """The module whose output holds the vision [CLS] token before the projection (FAIR's crop weights):
        a (B, T, W) token sequence whose first token is [CLS], or the (B, W) pooled [CLS] itself. None when
        the vision tower has no [CLS] token (a ResNet)."""
        return None

    def set_grad_checkpointing(self, enable: bool = True) -> bool:
        """Trade compute for memory while tuning; returns whether the model supports it."""
        return False

    # -- shared behaviour ----------------------------------------------------------------------------
    def image_forward_with_cls(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → (B, D) image embeddings and (B, W) [CLS] tokens, in one forward pass."""
        module = self.cls_module()
        if module is None:
            from clipadapt.errors import MethodUnavailable

            raise MethodUnavailable(f"{self.name} has no vision [CLS] token (FAIR needs a transformer image tower)")
        captured: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out[:, 0] if out.dim() == 3 else out))
        try:
            embeddings = self.image_forward(pixels)
        finally:
            handle.remove()
        return embeddings, captured[-1]

    @property
    def image_size(self) -> int:
        """Side of the square input the preprocessing produces."""
        if not hasattr(self, "_image_size"):
            self._image_size = int(self.preprocess(Image.new("RGB", (64, 48))).shape[-1])
        return self._image_size

    def identity(self) -> dict[str, Any]:
        """What identifies this backbone's features: used in cache keys and artifacts."""
        return {
            "library": self.library,
            "model": self.name,
            "pretrained": self.pretrained,
            "weights": self.weights_fingerprint(),
            "transform": describe_transform(self.preprocess),
        }

    @property
    def policy(self) -> Precision:
        """The precision policy this backbone encodes under (:mod:`clipadapt.runtime`)."""
        return precision_policy(self.device, self.precision)

    @contextlib.contextmanager
    def precision_scope(self) -> Iterator[None]:
        """Autocast and TF32 as the precision policy says, for everything encoded within the block."""
        with float32_matmuls(self.device, self.precision), autocast(self.device, self.precision):
            yield

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, D) float32 embeddings on the backbone's device, no gradients, under the
        precision policy (bf16 autocast on CUDA by default)."""
        self.model.eval()
        with self.precision_scope():
            out = self.image_forward(pixels.to(self.device, non_blocking=True))
        return out.float()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """T strings → (T, D) float32 embeddings, encoded in batches."""
        self.model.eval()
        chunks = []
        with self.precision_scope():
            for start in range(0, len(texts), batch_size):
                chunks.append(self.text_forward(list(texts[start : start + batch_size])).float())
        return torch.cat(chunks)

    def layernorm_parameters(self, which: Tower) -> list[nn.Parameter]:
        """The affine parameters of every LayerNorm in one tower (what ReCLIP and FAIR tune)."""
        params: list[nn.Parameter] = []
        for module in self.tower(which):
            for sub in module.modules():
                if isinstance(sub, nn.LayerNorm):
                    params.extend(p for p in sub.parameters(recurse=False))
        return params


def describe_transform(transform: object) -> str:
    """A stable text description of a transform (memory addresses removed), for cache keys."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))


def path_fingerprint(path: str | os.PathLike) -> str:
    """Size and modification time of a file, or of every file under a folder, hashed."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]
