"""WebDataset tar shards as an image source: indexed once, read in order, identical to the same images on disk."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from clipadapt.data import default_prompts, open_source
from clipadapt.errors import ClipAdaptError
from clipadapt.features import FeatureStore
from helpers import COLOURS


def write_shards(folder: Path, images: Path, per_shard: int = 7, labelled: bool = True) -> str:
    """The labelled folder ``images`` as shards of ``per_shard`` samples (key, png, cls); the brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(images.rglob("*.png"))
    classes = sorted(COLOURS)
    count = 0
    for count, start in enumerate(range(0, len(files), per_shard)):
        with wds.TarWriter(str(folder / f"data-{count:04d}.tar")) as sink:
            for path in files[start : start + per_shard]:
                sample = {"__key__": f"{path.parent.name}_{path.stem}", "png": path.read_bytes()}
                if labelled:
                    sample["cls"] = str(classes.index(path.parent.name)).encode()
                sink.write(sample)
    return str(folder / f"data-{{0000..{count:04d}}}.tar")


@pytest.fixture
def shards(image_folder: Path, tmp_path: Path) -> str:
    spec = write_shards(tmp_path / "shards" / "test", image_folder)
    (tmp_path / "shards" / "classnames.txt").write_text("\n".join(sorted(COLOURS)) + "\n")
    return spec


def test_shards_give_the_images_labels_and_features_of_the_folder(shards: str, image_folder: Path, tmp_path) -> None:
    from clipadapt.backbones import load_backbone

    source, folder = open_source(shards), open_source(str(image_folder))
    assert len(source.shards) == 3 and len(source) == len(folder) == 18
    assert source.classnames == folder.classnames == sorted(COLOURS), "classnames.txt one folder up"
    assert source.name == "shards" and np.array_equal(source.labels, folder.labels)
    for i in (0, 7, 17):  # first sample, first of the second shard, last
        assert np.array_equal(np.asarray(source.load(i)), np.asarray(folder.load(i)))
    backbone = load_backbone("toyclip", device="cpu")
    from_shards = FeatureStore(tmp_path / "a").extract(backbone, source, batch_size=4, num_workers=2, chunk_size=8)
    from_folder = FeatureStore(tmp_path / "b").extract(backbone, folder, batch_size=4, num_workers=0, chunk_size=8)
    assert torch.equal(from_shards.features, from_folder.features)
    assert source.describe(7).endswith("data-0001.tar:green_001.png")


def test_unlabelled_shards_take_class_names_and_templates_from_the_user_or_beside_them(image_folder, tmp_path) -> None:
    spec = write_shards(tmp_path / "plain", image_folder, labelled=False)
    with pytest.raises(ClipAdaptError, match="no class names"):
        open_source(spec)
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    source = open_source(spec, classnames_file=str(names))
    assert source.labels is None and source.classnames == ["cat", "dog"]
    (tmp_path / "plain" / "zeroshot_classification_templates.txt").write_text("a blurry photo of a {c}.\n")
    assert default_prompts(spec) == ["a blurry photo of a {c}."], "CLIP_benchmark's templates file"


def test_broken_shards_are_clear_errors(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ClipAdaptError, match="do not exist"):
        open_source(str(tmp_path / "none-{0..2}.tar"))
    (tmp_path / "bad.tar").write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(ClipAdaptError, match="cannot read the tar shard"):
        open_source(str(tmp_path / "bad.tar"))
    with wds.TarWriter(str(tmp_path / "noimage.tar")) as sink:
        sink.write({"__key__": "a", "cls": b"0"})
    with pytest.raises(ClipAdaptError, match="no image member"):
        open_source(str(tmp_path / "noimage.tar"))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    with wds.TarWriter(str(tmp_path / "half.tar")) as sink:
        sink.write({"__key__": "a", "png": buffer.getvalue(), "cls": b"0"})
        sink.write({"__key__": "b", "png": buffer.getvalue()})
    with pytest.raises(ClipAdaptError, match="label all or none"):
        open_source(str(tmp_path / "half.tar"))


def test_cls_members_holding_class_names_are_matched_by_name(image_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "named"
    folder.mkdir()
    files = sorted(image_folder.rglob("*.png"))
    with wds.TarWriter(str(folder / "data.tar")) as sink:
        for path in files:
            sink.write({"__key__": f"{path.parent.name}_{path.stem}", "png": path.read_bytes(),
                        "cls": path.parent.name.upper().encode()})  # fmt: skip
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\nblue\n")
    source = open_source(str(folder / "data.tar"), classnames_file=str(names))
    assert [source.classnames[i] for i in source.labels] == [p.parent.name for p in files]
    names.write_text("red\ngreen\n")
    with pytest.raises(ClipAdaptError, match=r"1 label without a matching class name: 'BLUE'"):
        open_source(str(folder / "data.tar"), classnames_file=str(names))
