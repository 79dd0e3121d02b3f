from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipadapt.errors import ClipAdaptError
from clipadapt.features import load_feature_file, save_feature_file
from helpers import make_feature_arrays


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_round_trip(tmp_path: Path) -> None:
    arrays = make_feature_arrays()
    arrays["split"] = np.array(["train", "test"] * 30)
    arrays["text_all"] = np.stack([arrays["text_features"]] * 2)
    fs = load_feature_file(_write(tmp_path / "f.npz", **arrays))
    save_feature_file(fs, tmp_path / "g.npz")
    again = load_feature_file(tmp_path / "g.npz")
    assert torch.equal(fs.image_features, again.image_features) and torch.equal(fs.labels, again.labels)
    assert again.classnames == ["class0", "class1", "class2"] and again.dataset == "synthetic"
    assert (again.split == arrays["split"]).all() and again.text_all.shape == (2, 3, 16)


def test_labels_are_optional(tmp_path: Path) -> None:
    arrays = make_feature_arrays()
    del arrays["labels"]
    assert load_feature_file(_write(tmp_path / "f.npz", **arrays)).labels is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("text_features"), "not a clipadapt feature file: it lacks text_features"),
        (lambda a: a.__setitem__("image_features", a["image_features"][:, :5]), "dimension 5"),
        (lambda a: a.__setitem__("image_features", a["image_features"][0]), "must be \\(N, D\\)"),
        (lambda a: a["image_features"].__setitem__((3, 2), np.nan), "NaN"),
        (lambda a: a["text_features"].__setitem__((0, 0), np.inf), "NaN or infinite"),
        (lambda a: a.__setitem__("labels", a["labels"][:10]), "labels must be \\(60,\\)"),
        (lambda a: a.__setitem__("labels", a["labels"] + 5), "labels span"),
        (lambda a: a.__setitem__("classnames", np.array(["a", "b"])), "2 class names for 3"),
        (lambda a: a.__setitem__("text_all", np.zeros((2, 4, 16), np.float32)), "text_all must be"),
        (lambda a: a.__setitem__("split", np.array(["test"] * 3)), "split must be"),
    ],
)
def test_invalid_feature_files_are_clear_errors(tmp_path: Path, change, message: str) -> None:
    arrays = make_feature_arrays()
    change(arrays)
    with pytest.raises(ClipAdaptError, match=message):
        load_feature_file(_write(tmp_path / "bad.npz", **arrays))


def test_not_a_feature_file(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(ClipAdaptError, match=r"is not a clipadapt feature file: not an \.npz archive"):
        load_feature_file(tmp_path / "x.npz")
    with pytest.raises(ClipAdaptError, match="does not exist"):
        load_feature_file(tmp_path / "nope.npz")


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    from clipadapt.io import write_json

    write_json(tmp_path / "r.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~mask
