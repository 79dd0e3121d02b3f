"""open_clip models: any architecture and pretrained tag, or a local checkpoint path."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from clipadapt.backbones.base import Backbone, Tower, path_fingerprint
from clipadapt.errors import ClipAdaptError, unknown_name

RANDOM_INIT = "random"
RANDOM_INIT_SEED = 0
SCHEMAS = ("hf-hub:", "local-dir:")
BUNDLED_CONFIGS = Path(__file__).resolve().parents[1] / "resources" / "model_configs"


def quick_gelu_needed(arch: str, pretrained: str) -> bool:
    """True when the tag's weights were trained with QuickGELU but ``arch`` would build plain GELU.

    open_clip only warns about this mismatch; ``openai`` weights on ``ViT-B-32`` then lose several
    points of accuracy. We force QuickGELU instead, exactly as the ``-quickgelu`` configs do.
    """
    import open_clip

    if arch.endswith("-quickgelu") or not open_clip.is_pretrained_cfg(arch, pretrained):
        return False
    return bool(open_clip.get_pretrained_cfg(arch, pretrained).get("quick_gelu", False))


def register_bundled_configs() -> None:
    """Make the architectures shipped in ``clipadapt/resources/model_configs`` known to open_clip."""
    import open_clip

    if BUNDLED_CONFIGS not in open_clip.factory._MODEL_CONFIG_PATHS:
        open_clip.add_model_config(BUNDLED_CONFIGS)


def resolve_weights(arch: str, pretrained: str | None) -> tuple[str | None, str, bool]:
    """Check ``arch`` and ``pretrained``; return (weights argument for open_clip, label, force QuickGELU).

    ``pretrained`` is a tag of ``arch``, a checkpoint path, or ``random``; schema names
    (``hf-hub:org/repo``, ``local-dir:/path``) carry their own weights and take no ``pretrained``.
    """
    import open_clip

    if arch.startswith(SCHEMAS):
        return None, "", False
    if arch not in open_clip.list_models():
        raise unknown_name("model", arch, open_clip.list_models())
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not pretrained:
        raise ClipAdaptError(
            f"open_clip model {arch!r} needs --pretrained: a tag ({', '.join(tags) or 'none known'}), "
            f"a checkpoint path, or '{RANDOM_INIT}' for random weights"
        )
    if pretrained == RANDOM_INIT:
        return None, RANDOM_INIT, False
    if os.path.exists(pretrained):
        return pretrained, pretrained, False
    if pretrained not in tags:
        raise unknown_name(f"pretrained tag for {arch}", pretrained, tags)
    return pretrained, pretrained, quick_gelu_needed(arch, pretrained)


class OpenClipBackbone(Backbone):
    library = "open_clip"

    def __init__(
        self,
        arch: str,
        pretrained: str | None,
        device: torch.device,
        precision: str = "auto",
        cache_dir: str | None = None,
    ) -> None:
        import open_clip

        register_bundled_configs()
        weights, label, force_quick_gelu = resolve_weights(arch, pretrained)
        try:
            # Random weights are drawn from a fixed seed so that "random" names one model (and one cache key).
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                torch.manual_seed(RANDOM_INIT_SEED)
                warnings.filterwarnings("ignore", message=".*QuickGELU mismatch.*")
                model, _, preprocess = open_clip.create_model_and_transforms(
                    arch, pretrained=weights, device=device, force_quick_gelu=force_quick_gelu, cache_dir=cache_dir
                )
        except (OSError, RuntimeError, ValueError) as exc:
            raise ClipAdaptError(
                f"could not load open_clip {arch!r} with pretrained {pretrained!r}: {str(exc).splitlines()[0]} "
                "(no network here? pass a local checkpoint path to --pretrained)"
            ) from None
        super().__init__(arch, label, device, precision)
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.quick_gelu = force_quick_gelu or arch.endswith("-quickgelu")

    def image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def text_forward(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens)

    def tower(self, which: Tower) -> list[nn.Module]:
        if which == "vision":
            return [self.model.visual]
        if hasattr(self.model, "text"):  # CustomTextCLIP
            return [self.model.text]
        return [self.model.transformer, self.model.ln_final]

    def cls_module(self) -> nn.Module | None:
        return getattr(self.model.visual, "ln_post", None)  # VisionTransformer; a ModifiedResNet has none

    def set_grad_checkpointing(self, enable: bool = True) -> bool:
        self.model.set_grad_checkpointing(enable)
        return True

    def weights_fingerprint(self) -> str:
        if self.name.startswith("local-dir:"):
            return path_fingerprint(self.name.removeprefix("local-dir:"))
        if self.pretrained and os.path.exists(self.pretrained):
            return path_fingerprint(self.pretrained)
        return f"{self.name}:{self.pretrained}{'+quickgelu' if self.quick_gelu else ''}"
