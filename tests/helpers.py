"""Test helpers that build tiny models and image data on disk; nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_OPENCLIP = "clipadapt-test-tiny-vit"
TINY_OPENCLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def register_tiny_openclip(folder: Path) -> str:
    """Write a tiny open_clip architecture config and register it under ``TINY_OPENCLIP``."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TINY_OPENCLIP}.json").write_text(json.dumps(TINY_OPENCLIP_CONFIG))
    open_clip.add_model_config(folder)
    return TINY_OPENCLIP


def save_tiny_hf_clip(folder: Path) -> Path:
    """A random tiny transformers CLIPModel, its image processor and a byte-level BPE tokenizer."""
    import torch
    import transformers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_level_alphabet()
    vocab = {tok: i for i, tok in enumerate([*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"])}
    if int(transformers.__version__.split(".")[0]) >= 5:
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=24)
    else:  # transformers 4 reads the vocabulary from files
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=24)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 24,
                     "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
                     "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _byte_level_alphabet() -> list[str]:
    """The 256 printable characters that byte-level BPE uses for the 256 byte values (GPT-2's mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def make_image_folder(root: Path, per_class: int = 6, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """One sub-folder per colour with noisy images of that colour (labelled folder layout)."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-20, 20, (*size, 3))
            pixels = np.clip(np.array(rgb)[None, None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return path


def make_feature_arrays(n: int = 60, c: int = 3, d: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays of a valid feature file with class-clustered image features around the text prototypes."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(c, d)).astype(np.float32)
    labels = np.arange(n) % c
    image = (text[labels] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    return {
        "image_features": image,
        "text_features": text,
        "labels": labels.astype(np.int64),
        "classnames": np.array([f"class{i}" for i in range(c)]),
        "model": np.array("toy"),
        "pretrained": np.array("none"),
        "dataset": np.array("synthetic"),
    }


def make_modality_gap(
    n: int = 600, c: int = 6, d: int = 32, seed: int = 0, text_noise: float = 1.5
) -> dict[str, np.ndarray]:
    """A feature file with a modality gap: images cluster around class centres μ_c, while the text
    prototypes are μ_c moved by one shared offset plus per-class noise, so zero-shot is imperfect but the
    images themselves are well clustered (what transductive methods can exploit)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    offset = rng.normal(size=d)
    offset *= 1.2 / np.linalg.norm(offset)
    text = centres + offset + text_noise * rng.normal(size=(c, d)) / np.sqrt(d)
    labels = np.arange(n) % c
    image = centres[labels] + 0.45 * rng.normal(size=(n, d)) / np.sqrt(d) * 3
    return {
        "image_features": image.astype(np.float32),
        "text_features": text.astype(np.float32),
        "labels": labels.astype(np.int64),
        "classnames": np.array([f"class{i}" for i in range(c)]),
        "model": np.array("synthetic"),
        "pretrained": np.array("none"),
        "dataset": np.array("modality-gap"),
    }


def as_featureset(arrays: dict[str, np.ndarray]):
    """A FeatureSet of the image/text features and labels of a generated feature file."""
    from clipadapt.features.featureset import FeatureSet

    return FeatureSet(
        torch.from_numpy(arrays["image_features"]),
        torch.from_numpy(arrays["text_features"]),
        torch.from_numpy(arrays["labels"]),
    )
