"""open_clip models: any architecture and pretrained tag, or a local checkpoint path."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from clipadapt.backbones import hub
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


HF_WEIGHTS = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")


def weights_source(arch: str, weights: str | None, cache_dir: str | None) -> tuple[bool, str] | None:
    """(cached?, where they would download from) for weights open_clip fetches; None for local or random
    weights. Mirrors open_clip's ``download_pretrained``: the hub copy when the tag has one, else the URL."""
    import open_clip

    if arch.startswith("hf-hub:"):
        repo = arch.removeprefix("hf-hub:")
        return hub.hf_cached(repo, HF_WEIGHTS, cache_dir), hub.hub_url()
    if weights is None or os.path.exists(weights) or arch.startswith(SCHEMAS):
        return None
    cfg = open_clip.get_pretrained_cfg(arch, weights)
    if "file" in cfg or not (cfg.get("hf_hub") or cfg.get("url")):
        return None
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        names = (filename, filename.rsplit(".", 1)[0] + ".safetensors") if filename else HF_WEIGHTS
        return hub.hf_cached(repo, names, cache_dir), hub.hub_url()
    url = cfg.get("url", "")
    return os.path.isfile(os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))), url


def download_guard(arch: str, weights: str | None, cache_dir: str | None) -> contextlib.AbstractContextManager:
    """How to load: as usual, or offline from the cache when the network is out; raises at once when the
    weights are neither cached nor downloadable (:mod:`clipadapt.backbones.hub`)."""
    source = weights_source(arch, weights, cache_dir)
    if source is None or hub.can_download(source[1]):
        return contextlib.nullcontext()
    if source[0]:
        return hub.hub_offline()
    raise hub.not_available(
        f"open_clip {arch!r}" + (f" (pretrained {weights!r})" if weights else ""),
        "download them once where the network is reachable (open_clip caches them under --model_cache_dir, "
        "by default ~/.cache/huggingface), or pass the checkpoint file: --pretrained /path/to/weights.bin",
    )


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
        guard = download_guard(arch, weights, cache_dir)
        try:
            # Random weights are drawn from a fixed seed so that "random" names one model (and one cache key).
            with guard, hub.quiet_loaders(), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                torch.manual_seed(RANDOM_INIT_SEED)
                warnings.filterwarnings("ignore", message=".*QuickGELU mismatch.*")
                model, _, preprocess = open_clip.create_model_and_transforms(
                    arch, pretrained=weights, device=device, force_quick_gelu=force_quick_gelu, cache_dir=cache_dir
                )
        except (OSError, RuntimeError, ValueError) as exc:
            raise ClipAdaptError(
                f"could not load open_clip {arch!r} with pretrained {pretrained!r}: {str(exc).splitlines()[0]} "
                "(pass a local checkpoint path to --pretrained)"
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
