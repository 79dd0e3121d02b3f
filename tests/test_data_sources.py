from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipadapt.data import default_prompts, open_source
from clipadapt.data.prompts import DEFAULT_TEMPLATES, expand_prompts, read_prompts
from clipadapt.errors import ClipAdaptError
from helpers import make_image_folder

EUROSAT_FOLDERS = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                   "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"]  # fmt: skip


def test_folder_of_class_subfolders(image_folder: Path) -> None:
    source = open_source(str(image_folder))
    assert source.classnames == ["blue", "green", "red"]
    assert len(source) == 18
    assert np.bincount(source.labels).tolist() == [6, 6, 6]
    assert source.load(0).mode == "RGB"


def test_a_folder_named_like_a_dataset_keeps_its_own_classnames(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = image_folder.rename(tmp_path / "dtd")
    monkeypatch.chdir(tmp_path)
    assert open_source("dtd").classnames == ["blue", "green", "red"]
    assert named.is_dir()


def test_flat_folder_is_unlabelled_and_needs_classnames(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for f in (make_image_folder(tmp_path / "src") / "red").iterdir():
        flat.mkdir(exist_ok=True)
        (flat / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ClipAdaptError, match="no class names: pass --classnames"):
        open_source(str(flat))
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\nblue\n")
    source = open_source(str(flat), classnames_file=str(names))
    assert source.labels is None and source.classnames == ["red", "green", "blue"] and len(source) == 6


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(ClipAdaptError, match="no images found"):
        open_source(str(tmp_path / "empty"))


def test_csv_manifest_with_names_and_split(image_folder: Path) -> None:
    rows = ["path,label,split"]
    for i, f in enumerate(sorted(image_folder.rglob("*.png"))):
        rows.append(f"{f.relative_to(image_folder)},{f.parent.name},{'train' if i % 2 else 'test'}")
    manifest = image_folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    source = open_source(str(manifest))
    assert source.classnames == ["blue", "green", "red"]
    assert len(source) == 18 and set(source.splits) == {"train", "test"}
    assert source.load(3).size == (48, 40)


def test_csv_manifest_with_integer_labels_needs_classnames(image_folder: Path, tmp_path: Path) -> None:
    manifest = image_folder / "m.csv"
    manifest.write_text("path,label\nred/000.png,2\nblue/000.png,0\n")
    with pytest.raises(ClipAdaptError, match="integer labels"):
        open_source(str(manifest))
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["blue", "green", "red"]))
    assert open_source(str(manifest), classnames_file=str(names)).labels.tolist() == [2, 0]
    names.write_text(json.dumps(["blue", "green"]))
    with pytest.raises(ClipAdaptError, match="class-name count must match"):
        open_source(str(manifest), classnames_file=str(names))


def test_csv_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.png,x\n")
    with pytest.raises(ClipAdaptError, match="needs a 'path' column"):
        open_source(str(bad))
    with pytest.raises(ClipAdaptError, match="does not exist"):
        open_source(str(tmp_path / "missing.csv"))


def test_class_names_are_matched_to_folders_by_name_not_by_position(image_folder: Path, tmp_path: Path) -> None:
    names = tmp_path / "reversed.txt"
    names.write_text("red\ngreen\nblue\n")  # the folders sort as blue, green, red
    source = open_source(str(image_folder), classnames_file=str(names))
    assert source.classnames == ["red", "green", "blue"]
    for path, label in zip(source.paths(), source.labels, strict=True):
        assert Path(path).parent.name == source.classnames[label], path


def test_a_folder_holding_a_few_of_the_listed_classes_keeps_their_names(
    image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    shutil.rmtree(image_folder / "blue")
    (image_folder / "green").rename(image_folder / "Sea_Lake")
    names = tmp_path / "names.txt"
    names.write_text("airport\nred\nbeach\nsea lake\n")
    with caplog.at_level("WARNING", logger="clipadapt"):
        source = open_source(str(image_folder), classnames_file=str(names))
    assert {source.classnames[i] for i in source.labels} == {"red", "sea lake"}, "'_' as a space, case ignored"
    assert sum(source.classnames[i] == "red" for i in source.labels) == 6
    [warning] = [r.getMessage() for r in caplog.records]
    assert "2 of 4 class names have no image: 'airport', 'beach'" in warning


def test_a_folder_without_a_matching_class_name_is_an_error_that_names_it(image_folder: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\nviaduct\n")
    with pytest.raises(ClipAdaptError, match=r"1 class folder without a matching class name: 'blue'"):
        open_source(str(image_folder), classnames_file=str(names))


def test_csv_labels_are_matched_by_name_with_the_folder_rules(image_folder: Path, tmp_path: Path) -> None:
    manifest = image_folder / "m.csv"
    manifest.write_text("path,label\nred/000.png,Red\nblue/000.png,dark_blue\ngreen/000.png,green\n")
    names = tmp_path / "names.txt"
    names.write_text("green\ndark blue\nred\n")
    assert open_source(str(manifest), classnames_file=str(names)).labels.tolist() == [2, 1, 0]
    names.write_text("green\nred\n")
    with pytest.raises(ClipAdaptError, match=r"1 label without a matching class name: 'dark_blue'"):
        open_source(str(manifest), classnames_file=str(names))
    names.write_text("red\nRED\ngreen\ndark blue\n")
    manifest.write_text("path,label\nred/000.png,red\nblue/000.png,Red\n")
    with pytest.raises(ClipAdaptError, match=r"'Red' matches 'red', 'RED'"):
        open_source(str(manifest), classnames_file=str(names))


def test_one_class_is_an_error_and_images_beside_the_class_folders_a_warning(
    image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    for name in ("green", "blue"):
        shutil.rmtree(image_folder / name)
    with pytest.raises(ClipAdaptError, match=r"one class \('red'\).*at least two.*--classnames"):
        open_source(str(image_folder))
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\n")
    assert len(open_source(str(image_folder), classnames_file=str(names))) == 6, "one class of a listed two is fine"
    (image_folder / "stray.png").write_bytes((image_folder / "red" / "000.png").read_bytes())
    (image_folder / "empty_class").mkdir()
    with caplog.at_level("WARNING", logger="clipadapt"):
        source = open_source(str(image_folder), classnames_file=str(names))
    assert len(source) == 6
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "left out 1 image lying beside the class folders (first: stray.png)" in messages
    assert "left out 1 class folder with no image: 'empty_class'" in messages


def test_a_repeated_class_name_is_named(image_folder: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\nblue\ngreen\n")
    with pytest.raises(ClipAdaptError, match=r"repeats 'green'"):
        open_source(str(image_folder), classnames_file=str(names))


def test_folder_classnames_with_index_labels_must_cover_them(image_folder: Path, tmp_path: Path) -> None:
    manifest = image_folder / "m.csv"
    manifest.write_text("path,label\nred/000.png,2\nblue/000.png,0\n")
    names = tmp_path / "names.txt"
    names.write_text("one\ntwo\n")
    with pytest.raises(ClipAdaptError, match=r"labels 0..2 but 2 class names"):
        open_source(str(manifest), classnames_file=str(names))


def test_torchvision_dataset_by_name_uses_bundled_classnames(tmp_path: Path) -> None:
    for folder in EUROSAT_FOLDERS:
        make_image_folder(tmp_path / "tmp" / folder, per_class=1)
        target = tmp_path / "eurosat" / "2750" / folder
        target.mkdir(parents=True)
        (tmp_path / "tmp" / folder / "red" / "000.png").rename(target / "a.jpg")
    source = open_source("eurosat", root=str(tmp_path), split="all")
    assert len(source) == 10 and source.labels.tolist() == list(range(10))
    assert source.classnames[0] == "annual crop land"  # CLIP's curated names, not folder names
    assert source.load(4).mode == "RGB"
    assert "centered satellite photo" in default_prompts("eurosat")[0]


def test_torchvision_missing_dataset_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ClipAdaptError, match=r"cannot open 'cifar10'.*--download"):
        open_source("cifar10", root=str(tmp_path))
    with pytest.raises(ClipAdaptError, match="needs --dataset_root"):
        open_source("cifar10")
    with pytest.raises(ClipAdaptError, match="has no split 'valid'"):
        open_source("cifar10", root=str(tmp_path), split="valid")


def test_unknown_dataset_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(ClipAdaptError, match=r"unknown dataset 'cifar01'.*cifar10"):
        open_source("cifar01")


def test_huggingface_dataset_from_disk(image_folder: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    files = sorted(image_folder.rglob("*.png"))
    names = ["blue", "green", "red"]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    ds = datasets.Dataset.from_dict(
        {"img": [str(f) for f in files], "label": [names.index(f.parent.name) for f in files]}, features=features
    )
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "hfds"))
    source = open_source(f"hf:{tmp_path / 'hfds'}", split="test")
    assert source.classnames == names and len(source) == 18
    assert np.bincount(source.labels).tolist() == [6, 6, 6]
    assert source.load(0).mode == "RGB"
    with pytest.raises(ClipAdaptError, match="no split 'train'"):
        open_source(f"hf:{tmp_path / 'hfds'}", split="train")


def test_templates_and_descriptions(tmp_path: Path) -> None:
    templates = tmp_path / "t.txt"
    templates.write_text("a photo of a {c}.\n# comment\na drawing of a {c}.\n")
    assert expand_prompts(["cat"], read_prompts(templates)) == [["a photo of a cat.", "a drawing of a cat."]]
    descriptions = tmp_path / "d.json"
    descriptions.write_text(json.dumps({"cat": ["a small feline", "whiskers"], "dog": ["a loyal canine"]}))
    assert expand_prompts(["dog", "cat"], read_prompts(descriptions)) == [
        ["a loyal canine"],
        ["a small feline", "whiskers"],
    ]
    with pytest.raises(ClipAdaptError, match="lack 1 class"):
        expand_prompts(["cow"], read_prompts(descriptions))
    templates.write_text("a photo of a thing\n")
    with pytest.raises(ClipAdaptError, match="placeholder"):
        read_prompts(templates)
    assert default_prompts(str(tmp_path / "my-folder")) == DEFAULT_TEMPLATES
