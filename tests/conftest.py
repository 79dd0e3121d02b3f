from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import make_image_folder, register_tiny_openclip, save_tiny_hf_clip

# the real WHU-RS19 features beside the checkout (CLIPADAPT_WHURS19 names another folder, e.g. on a GPU machine)
SHARED_DATA = Path(
    os.environ.get("CLIPADAPT_WHURS19") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "whurs19"
)


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory: pytest.TempPathFactory) -> str:
    return register_tiny_openclip(tmp_path_factory.mktemp("openclip_configs"))


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_hf_clip(tmp_path_factory.mktemp("hf_clip"))


@pytest.fixture(scope="session")
def tiny_backbone(tiny_openclip: str):
    from clipadapt.backbones import load_backbone

    return load_backbone(tiny_openclip, "random", device="cpu")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "colours")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own feature cache."""
    monkeypatch.setenv("CLIPADAPT_CACHE", str(tmp_path / "cache"))


def whurs19_files() -> list[Path]:
    return sorted(SHARED_DATA.glob("*.npz"))
