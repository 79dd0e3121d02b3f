from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from clipadapt.backbones import load_backbone
from clipadapt.backbones.openclip import quick_gelu_needed
from clipadapt.errors import ClipAdaptError


def _encode_one_image(backbone) -> torch.Tensor:
    pixels = backbone.preprocess(Image.new("RGB", (50, 40), (200, 10, 10)))[None]
    return backbone.encode_images(pixels)


def test_openclip_tiny_config_encodes_images_and_texts(tiny_backbone) -> None:
    image = _encode_one_image(tiny_backbone)
    text = tiny_backbone.encode_texts(["a photo of a red square.", "a photo of a blue square.", "x"], batch_size=2)
    assert image.shape == (1, 32) and image.dtype == torch.float32
    assert text.shape == (3, 32)
    assert not torch.allclose(text[0], text[1])


def test_openclip_local_checkpoint_path_loads_the_same_weights(tiny_openclip: str, tmp_path: Path) -> None:
    first = load_backbone(tiny_openclip, "random", device="cpu")
    checkpoint = tmp_path / "tiny.pt"
    torch.save(first.model.state_dict(), checkpoint)
    second = load_backbone(tiny_openclip, str(checkpoint), device="cpu")
    assert torch.allclose(first.encode_texts(["a cat"]), second.encode_texts(["a cat"]))
    assert second.identity()["weights"] != first.identity()["weights"]


def test_openclip_random_init_is_always_the_same_model(tiny_openclip: str) -> None:
    torch.manual_seed(7)
    a = load_backbone(tiny_openclip, "random", device="cpu").encode_texts(["a dog"])
    torch.manual_seed(8)
    b = load_backbone(tiny_openclip, "random", device="cpu").encode_texts(["a dog"])
    assert torch.equal(a, b), "'random' must name one set of weights, or cached features would be stale"


def test_openai_tags_force_quickgelu_without_downloading() -> None:
    assert quick_gelu_needed("ViT-B-32", "openai")
    assert quick_gelu_needed("RN50", "openai")
    assert not quick_gelu_needed("ViT-B-32-quickgelu", "openai")  # the architecture already has it
    assert not quick_gelu_needed("ViT-B-32", "laion2b_s34b_b79k")  # trained with plain GELU


def test_quickgelu_is_applied_to_the_built_model(tiny_openclip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip

    import clipadapt.backbones.openclip as oc

    monkeypatch.setattr(oc, "quick_gelu_needed", lambda arch, tag: True)
    monkeypatch.setattr(open_clip, "list_pretrained_tags_by_model", lambda arch: ["faketag"])
    seen = {}
    real = open_clip.create_model_and_transforms

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(args[0], pretrained=None, force_quick_gelu=kwargs["force_quick_gelu"], device="cpu")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", spy)
    backbone = load_backbone(tiny_openclip, "faketag", device="cpu")
    assert seen["force_quick_gelu"] is True
    assert backbone.identity()["weights"].endswith("+quickgelu")
    acts = [m for m in backbone.model.modules() if type(m).__name__ == "QuickGELU"]
    assert acts, "the vision and text towers use QuickGELU"


def test_transformers_tiny_clip_through_the_same_protocol(tiny_hf_dir: Path) -> None:
    backbone = load_backbone(f"hf:{tiny_hf_dir}", device="cpu")
    assert backbone.library == "transformers"
    assert _encode_one_image(backbone).shape == (1, 16)
    texts = backbone.encode_texts(["a red thing", "a blue thing"])
    assert texts.shape == (2, 16) and not torch.allclose(texts[0], texts[1])
    # a folder with a transformers config is recognised without the hf: prefix
    assert load_backbone(str(tiny_hf_dir), device="cpu").library == "transformers"


@pytest.mark.parametrize("kind", ["open_clip", "transformers"])
def test_layernorm_parameters_of_both_towers(kind: str, tiny_backbone, tiny_hf_dir: Path) -> None:
    backbone = tiny_backbone if kind == "open_clip" else load_backbone(f"hf:{tiny_hf_dir}", device="cpu")
    vision, text = backbone.layernorm_parameters("vision"), backbone.layernorm_parameters("text")
    assert vision and text
    assert not {id(p) for p in vision} & {id(p) for p in text}
    assert all(p.ndim == 1 for p in vision + text)


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ClipAdaptError, match=r"unknown model 'ViT-B-23'.*ViT-B-32"):
        load_backbone("ViT-B-23", "openai", device="cpu")


def test_unknown_pretrained_tag_lists_known_tags() -> None:
    with pytest.raises(ClipAdaptError, match=r"pretrained tag for ViT-B-32.*openai"):
        load_backbone("ViT-B-32", "opnai", device="cpu")


def test_openclip_without_pretrained_says_what_to_pass(tiny_openclip: str) -> None:
    with pytest.raises(ClipAdaptError, match="needs --pretrained"):
        load_backbone(tiny_openclip, None, device="cpu")


def test_missing_hf_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClipAdaptError, match="could not load transformers model"):
        load_backbone(f"hf:{tmp_path / 'nothing-here'}", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error(tiny_openclip: str) -> None:
    with pytest.raises(ClipAdaptError, match="CUDA was requested"):
        load_backbone(tiny_openclip, "random", device="cuda")
