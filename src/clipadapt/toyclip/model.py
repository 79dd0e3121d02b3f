"""A small CLIP: ViT image tower and causal text transformer, both pre-LayerNorm, as in OpenAI's CLIP; its
weights saved and loaded as a folder (``toyclip.safetensors`` + ``config.json``)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from clipadapt.io import atomic_path, write_json

PAD, SOT, EOT, UNK = "<pad>", "<sot>", "<eot>", "<unk>"
WEIGHTS, CONFIG = "toyclip.safetensors", "config.json"


@dataclass
class ToyClipConfig:
    vocab: list[str] = field(default_factory=list)  # words; special tokens are prepended by the tokenizer
    image_size: int = 64
    patch_size: int = 16
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 64
    text_layers: int = 3
    heads: int = 4
    context_length: int = 16
    embed_dim: int = 64
    logit_scale: float = 0.0  # 0: learned from 1/0.07 and clamped at 100, as CLIP's; else fixed at this value
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def to_dict(self) -> dict:
        return asdict(self)


class WordTokenizer:
    """Lower-cased words → ids, framed by <sot> … <eot>, padded/truncated to ``context_length``."""

    def __init__(self, vocab: list[str], context_length: int) -> None:
        self.itos = [PAD, SOT, EOT, UNK, *vocab]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.context_length = context_length

    def encode(self, text: str) -> list[int]:
        words = re.findall(r"[a-z0-9\-]+", text.lower())
        ids = [self.stoi.get(w, self.stoi[UNK]) for w in words][: self.context_length - 2]
        return [self.stoi[SOT], *ids, self.stoi[EOT]]

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """T strings → (T, context_length) int64 token ids."""
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            out[row, : len(ids)] = torch.tensor(ids)
        return out


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)); x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class VisionTower(nn.Module):
    def __init__(self, cfg: ToyClipConfig) -> None:
        super().__init__()
        width, grid = cfg.vision_width, cfg.image_size // cfg.patch_size
        self.patch = nn.Conv2d(3, width, cfg.patch_size, cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * width**-0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(Block(width, cfg.heads) for _ in range(cfg.vision_layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, cfg.embed_dim) * width**-0.5)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 1 + patches, width) final tokens after ln_post ([CLS] first)."""
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, embed_dim): the projected [CLS] token."""
        return self.tokens(pixels)[:, 0] @ self.proj


class TextTower(nn.Module):
    def __init__(self, cfg: ToyClipConfig) -> None:
        super().__init__()
        width = cfg.text_width
        self.token_embedding = nn.Embedding(len(cfg.vocab) + 4, width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, width) * 0.01)
        self.blocks = nn.ModuleList(Block(width, cfg.heads) for _ in range(cfg.text_layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, cfg.embed_dim) * width**-0.5)
        causal = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(T, L) token ids → (T, embed_dim): the projected features at each sequence's <eot> token."""
        x = self.token_embedding(tokens) + self.positional_embedding
        for block in self.blocks:
            x = block(x, self.causal_mask)
        x = self.ln_final(x)
        eot = (tokens == 2).int().argmax(dim=1)  # id 2 is <eot>
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


class ToyClip(nn.Module):
    def __init__(self, cfg: ToyClipConfig) -> None:
        super().__init__()
        self.config = cfg
        self.visual = VisionTower(cfg)
        self.text = TextTower(cfg)
        if cfg.logit_scale:  # a buffer under the same name, so that the state dict looks the same either way
            self.register_buffer("logit_scale", torch.tensor(math.log(cfg.logit_scale)))
        else:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def contrastive_loss(
        self, pixels: torch.Tensor, tokens: torch.Tensor, shares: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Symmetric InfoNCE over a batch of B (image, caption) pairs: image i matches caption i, or, with
        ``shares`` (B, B), shows caption j's scene on a share ``shares[i, j]`` of its area (rows sum to 1;
        each direction's targets are the shares, normalised)."""
        image = F.normalize(self.visual(pixels), dim=-1)
        text = F.normalize(self.text(tokens), dim=-1)
        logits = self.logit_scale.exp().clamp(max=100) * image @ text.T
        if shares is None:
            target = torch.arange(len(logits))
            return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        by_text = shares.T / shares.T.sum(1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, shares) + F.cross_entropy(logits.T, by_text))


def save(model: ToyClip, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS, suffix=".safetensors") as tmp:
        save_file(state, str(tmp))
    write_json(out / CONFIG, model.config.to_dict())


def load(folder: Path) -> ToyClip:
    raw = json.loads((folder / CONFIG).read_text())
    raw["image_mean"], raw["image_std"] = tuple(raw["image_mean"]), tuple(raw["image_std"])
    model = ToyClip(ToyClipConfig(**raw))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.eval()
