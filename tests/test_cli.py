from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipadapt.cli import main
from conftest import whurs19_files
from helpers import make_feature_arrays, make_modality_gap, write_corrupt

RESULT_KEYS = ["dataset", "model", "pretrained", "task", "method", "setting", "hparams", "config", "classes",
               "text_digest", "protocol", "metrics", "seed", "shots", "seconds", "runtime", "history",
               "diagnostics"]  # fmt: skip
# Zero-shot top-1 of each WHU-RS19 feature file, from shared/GUIDE.md §5.
WHURS19_ZEROSHOT = {
    "CLIP_RN50": 0.7154, "CLIP_ViT-B-32": 0.8129, "CLIP_ViT-L-14": 0.8547,
    "GeoRSCLIP_ViT-B-32": 0.8876, "GeoRSCLIP_ViT-L-14": 0.8846, "RemoteCLIP_RN50": 0.9542,
    "RemoteCLIP_ViT-B-32": 0.9522, "RemoteCLIP_ViT-L-14": 0.9353,
}  # fmt: skip


@pytest.fixture
def feature_file(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic.npz"
    np.savez(path, **make_feature_arrays())
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(not whurs19_files(), reason="shared WHU-RS19 features not present")
def test_zeroshot_reproduces_the_published_whurs19_numbers(tmp_path: Path, capsys) -> None:
    files = [str(f) for f in whurs19_files()]
    template = str(tmp_path / "{pretrained}_{model}.json")
    code, _, _ = _run(capsys, "eval", "--features", *files, "--method", "zeroshot", "--output", template, "--quiet")
    assert code == 0
    for name, expected in WHURS19_ZEROSHOT.items():
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert list(record) == RESULT_KEYS
        assert record["metrics"]["acc1"] == pytest.approx(expected, abs=5e-4), name
        assert 0 <= record["metrics"]["mean_per_class_recall"] <= 1 and record["metrics"]["acc5"] >= expected


def test_grid_of_features_and_seeds_with_placeholders(feature_file: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other.npz"
    arrays = make_feature_arrays(seed=1)
    arrays["dataset"] = np.array("second")
    np.savez(other, **arrays)
    template = str(tmp_path / "out" / "{dataset}-{method}-{seed}.json")
    code, out, _ = _run(capsys, "eval", "--features", str(feature_file), str(other), "--seed", "0", "1",
                        "--output", template)  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "second-zeroshot-0.json", "second-zeroshot-1.json", "synthetic-zeroshot-0.json", "synthetic-zeroshot-1.json"
    ]  # fmt: skip
    assert out.count("| zeroshot |") == 4


def test_skip_existing(feature_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    out.write_text("{}")
    code, stdout, _ = _run(capsys, "eval", "--features", str(feature_file), "--output", str(out), "--skip_existing")
    assert code == 0 and out.read_text() == "{}" and "zeroshot" not in stdout


def test_colliding_outputs_are_refused_before_running(feature_file: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _run(capsys, "eval", "--features", str(feature_file), "--seed", "0", "1",
                        "--output", str(tmp_path / "r.json"))  # fmt: skip
    assert code == 2 and "add placeholders" in err and not (tmp_path / "r.json").exists()


def test_hyperparameter_override_is_recorded(feature_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    assert (
        _run(capsys, "eval", "--features", str(feature_file), "--hparam", "logit_scale=50", "--output", str(out))[0]
        == 0
    )
    assert json.loads(out.read_text())["hparams"] == {"logit_scale": 50.0}
    code, _, err = _run(capsys, "eval", "--features", str(feature_file), "--hparam", "lr=1")
    assert code == 2 and "no selected method has a hyperparameter 'lr'" in err


def test_build_table_csv_and_markdown(feature_file: Path, tmp_path: Path, capsys) -> None:
    template = str(tmp_path / "r-{seed}.json")
    _run(capsys, "eval", "--features", str(feature_file), "--seed", "0", "1", "--output", template)
    results = sorted(str(p) for p in tmp_path.glob("r-*.json"))
    assert _run(capsys, "build", *results, "--output", str(tmp_path / "t.csv"))[0] == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("dataset,model,pretrained,method") and len(lines) == 3
    acc = json.loads(Path(results[0]).read_text())["metrics"]["acc1"]
    assert f"{acc:.4f}" in lines[1]
    assert _run(capsys, "build", *results, "--output", str(tmp_path / "t.md"))[0] == 0
    assert (tmp_path / "t.md").read_text().startswith("| dataset |")


@pytest.mark.parametrize("what", ["methods", "datasets", "models"])
def test_list(what: str, capsys) -> None:
    code, out, _ = _run(capsys, "list", what)
    assert code == 0
    assert {"methods": "zeroshot", "datasets": "cifar10", "models": "ViT-B-32 --pretrained openai"}[what] in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--features", "{f}", "--method", "zeroshots"], "unknown method 'zeroshots'; did you mean 'zeroshot'"),
        (["eval", "--dataset", "cifar01", "--model", "ViT-B-32", "--pretrained", "openai"], "did you mean 'cifar10'"),
        (["eval", "--features", "{d}/missing.npz"], "does not exist"),
        (["eval"], "needs --features FILE or --dataset"),
        (["eval", "--dataset", "{i}", "--model", "ViT-B-23", "--pretrained", "openai"], "unknown model 'ViT-B-23'"),
        (["eval", "--dataset", "{d}/empty", "--model", "ViT-B-32", "--pretrained", "openai"], "no images found"),
        (["eval", "--features", "{f}", "--hparam", "logit_scale=abc"], "is not a float"),
        (["build", "{d}/nothing.json"], "cannot read result file"),
        (["eval", "--dataset", "{i}", "--model", "toyclip", "--views", "4", "--view_augment", "flip"], "use --views 1"),
        (["eval", "--features", "{f}", "--method", "inmap", "--device", "gpu"], "unknown device 'gpu'"),
        (["eval", "--features", "{f}", "--method", "inmap", "--device", "meta"], "unknown device 'meta'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    argv, message, feature_file: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.format(f=feature_file, d=tmp_path, i=image_folder) for a in argv]
    code, _, err = _run(capsys, *argv, *(["--output", str(tmp_path / "o.json")] if argv[0] == "eval" else []))
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()


def test_images_end_to_end_and_extract_matches_eval(
    tiny_openclip: str, image_folder: Path, tmp_path: Path, capsys
) -> None:
    write_corrupt(image_folder / "red" / "broken.png")
    model = ["--model", tiny_openclip, "--pretrained", "random", "--num_workers", "0", "--quiet"]
    code, _, err = _run(capsys, "eval", "--dataset", str(image_folder), *model, "--output", str(tmp_path / "a.json"))
    assert code == 0 and "skipped 1 unreadable image" in err
    code, out, _ = _run(capsys, "extract", "--dataset", str(image_folder), *model, "--output", str(tmp_path / "f.npz"))
    assert code == 0 and "18 images, 3 classes" in out
    assert _run(capsys, "eval", "--features", str(tmp_path / "f.npz"), "--output", str(tmp_path / "b.json"))[0] == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["metrics"] == b["metrics"] and a["dataset"] == b["dataset"] == "colours"
    assert a["model"] == b["model"] == tiny_openclip


def test_label_free_predictions_ignore_labels(feature_file: Path) -> None:
    import torch

    from clipadapt.evaluation.runner import fit_and_predict
    from clipadapt.features import load_feature_file
    from clipadapt.methods import build_method, list_methods

    features = load_feature_file(feature_file)
    shuffled = load_feature_file(feature_file)
    shuffled.labels = shuffled.labels[torch.randperm(len(shuffled), generator=torch.Generator().manual_seed(0))]
    views = features.image_features[:, None] + 0.1 * torch.randn(len(features), 8, features.dim)
    features.view_features = shuffled.view_features = views  # so that clip-enhance trains
    for cls in list_methods():
        if cls.label_free and not cls.needs_encoder:  # those: tests/test_encoder_tuning.py
            a = fit_and_predict(features, build_method(cls.name), seed=0).logits
            b = fit_and_predict(shuffled, build_method(cls.name), seed=0).logits
            assert torch.equal(a, b), cls.name


def test_build_pivot_has_one_column_per_method_and_a_mean_row(capsys, feature_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r" / "{method}.json"
    assert _run(capsys, "eval", "--features", str(feature_file), "--method", "zeroshot", "transclip",
                "--output", str(out))[0] == 0  # fmt: skip
    results = sorted(str(p) for p in (tmp_path / "r").glob("*.json"))
    code, text, _ = _run(capsys, "build", "--pivot", *results, "--output", str(tmp_path / "t.md"))
    assert code == 0 and (tmp_path / "t.md").read_text() == text
    header, _, row, mean = text.strip().splitlines()
    assert header.split("|")[3:5] == [" transclip ", " zeroshot "] and "s)" in row and mean.startswith("| mean top-1")


def test_eval_with_shots_runs_three_seeds_and_the_pivot_shows_their_spread(capsys, tmp_path: Path) -> None:
    path = tmp_path / "gap.npz"
    np.savez(path, **make_modality_gap(n=240))
    out = tmp_path / "r" / "{method}_{shots}shot_seed{seed}.json"
    code, _, _ = _run(capsys, "eval", "--features", str(path), "--method", "zeroshot", "tip-adapter",
                      "--shots", "1", "2", "--output", str(out))  # fmt: skip
    assert code == 0
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "r").glob("*.json"))]
    assert len(records) == 2 * 2 * 3 and {r["seed"] for r in records} == {1, 2, 3}
    assert {r["shots"] for r in records} == {1, 2}
    code, text, _ = _run(capsys, "build", "--pivot", *(str(p) for p in sorted((tmp_path / "r").glob("*.json"))))
    lines = text.strip().splitlines()
    assert code == 0 and lines[0].split("|")[3] == " shots " and " ± " in lines[2]
    assert sum(line.startswith("| mean top-1") for line in lines) == 2


def test_a_few_shot_method_without_shots_says_so(capsys, tmp_path: Path) -> None:
    path = tmp_path / "gap.npz"
    np.savez(path, **make_modality_gap(n=240))
    code, _, err = _run(capsys, "eval", "--features", str(path), "--method", "cmm")
    assert code == 2 and "--shots" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--features", "{f}", "--method", "inmap"],
        ["adapt", "--features", "{f}", "--method", "inmap"],
        ["extract", "--dataset", "{i}", "--model", "toyclip"],
        ["predict", "{i}", "--classifier", "{d}/clf"],
    ],
)
def test_cuda_on_a_machine_without_it_is_the_one_clear_error(
    argv, feature_file: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    """Every command refuses --device cuda without CUDA before any work (a feature-file run used to go on
    on the CPU silently)."""
    argv = [a.format(f=feature_file, i=image_folder, d=tmp_path) for a in argv]
    code, _, err = _run(capsys, *argv, "--device", "cuda", "--output", str(tmp_path / "out"))
    assert code == 2 and "CUDA was requested" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
