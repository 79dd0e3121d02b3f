"""Adapt once, save, reload in a fresh process, predict new images: the issue-7 workflow end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipadapt.backbones.toyclip import BUNDLED
from clipadapt.cli import main

pytestmark = pytest.mark.skipif(not (BUNDLED / "toyclip.safetensors").exists(), reason="bundled weights missing")


def _domain(root: Path, n: int, seed: int) -> Path:
    """A labelled CSV manifest of ``n`` generated sketch-domain images."""
    from clipadapt.demo import write_domain_manifest

    return write_domain_manifest(root, "sketch", n_test=n, n_pool=0, seed=seed)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world")
    return _domain(root / "adapt", 60, seed=0), _domain(root / "new", 24, seed=1)


@pytest.mark.parametrize(("method", "hparams"), [("inmap", []), ("reclip", ["epochs=1", "k=3"])])
def test_adapt_reload_in_a_fresh_process_and_predict_like_the_in_memory_classifier(
    domains, tmp_path: Path, capsys, method: str, hparams: list[str]
) -> None:
    from clipadapt.backbones import load_backbone
    from clipadapt.data import open_source
    from clipadapt.evaluation import evaluate
    from clipadapt.features import extract
    from clipadapt.world import WORLD_TEMPLATES

    adapt_csv, new_csv = domains
    folder = tmp_path / "classifier"
    overrides = [a for h in hparams for a in ("--hparam", h)]
    data = ["--dataset", str(adapt_csv), "--model", "toyclip", "--templates", _templates(tmp_path)]
    assert main(["adapt", *data, "--method", method, *overrides, "--output", str(folder), "--json", "--quiet"]) == 0
    adapted = json.loads(capsys.readouterr().out)["result"]
    assert main(["eval", *data, "--method", method, *overrides, "--json", "--quiet"]) == 0
    evaluated = json.loads(capsys.readouterr().out)[0]
    assert adapted["metrics"] == evaluated["metrics"], "adapt scores exactly like eval"
    card = json.loads((folder / "card.json").read_text())
    assert card["backbone"]["model"] == "toyclip" and card["method"] == method
    assert card["data"]["images"] == 60 and len(card["data"]["fingerprint"]) == 16
    assert card["prompts"]["templates"] == list(WORLD_TEMPLATES) and card["clipadapt_version"]

    out = tmp_path / "predictions.csv"
    command = [sys.executable, "-m", "clipadapt", "predict", "--classifier", str(folder), str(new_csv)]
    done = subprocess.run([*command, "--output", str(out), "--top_k", "3", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert list(rows[0]) == ["path", "label_1", "probability_1", "label_2", "probability_2", "label_3",
                             "probability_3", "error"]  # fmt: skip

    # the in-memory classifier of the same run (the CLI's default device and policy), on the new images' features
    backbone = load_backbone("toyclip")
    features = extract(backbone, open_source(str(adapt_csv)), list(WORLD_TEMPLATES))
    _, prediction = evaluate(features, method, hparams=_typed(hparams), device=backbone.device)
    new = extract(backbone, open_source(str(new_csv)), list(WORLD_TEMPLATES))
    if hasattr(prediction.classifier, "tuned_features"):
        logits = prediction.classifier.image_logits(new.encoder, new.image_features)
    else:
        logits = prediction.classifier.logits(new.image_features)
    names = new.class_names
    assert [r["path"] for r in rows] == new.paths
    assert [r["label_1"] for r in rows] == [names[i] for i in logits.argmax(1).tolist()]
    expected = logits.softmax(1).max(1).values
    assert torch.allclose(torch.tensor([float(r["probability_1"]) for r in rows]), expected, atol=1e-4)
    accuracy = sum(r["label_1"] == names[y] for r, y in zip(rows, new.labels.tolist(), strict=True)) / len(rows)
    assert accuracy == pytest.approx(float((logits.argmax(1) == new.labels).float().mean()))


def test_predict_applies_the_precision_policy_of_the_card(domains, tmp_path: Path) -> None:
    """Adapted under bf16 autocast (here on the CPU), a classifier predicts under bf16 too, and then agrees
    with the adaptation's own classifier to 1e-4; forcing fp32 visibly changes the probabilities."""
    from clipadapt.artifact import load_classifier
    from clipadapt.backbones import load_backbone
    from clipadapt.data import open_source
    from clipadapt.features import extract
    from clipadapt.predict import predict
    from clipadapt.world import WORLD_TEMPLATES

    adapt_csv, new_csv = domains
    folder = tmp_path / "classifier"
    data = ["--dataset", str(adapt_csv), "--model", "toyclip", "--templates", _templates(tmp_path), "--device", "cpu"]
    argv = ["adapt", *data, "--method", "zeroshot", "--precision", "bf16", "--output", str(folder), "--quiet"]
    assert main(argv) == 0
    card = json.loads((folder / "card.json").read_text())
    assert card["runtime"] == {"device": "cpu", "precision": "bf16", "autocast": "bf16", "tf32": False}

    backbone = load_backbone("toyclip", device="cpu", precision="bf16")
    new = extract(backbone, open_source(str(new_csv)), list(WORLD_TEMPLATES))
    expected = load_classifier(folder).logits(new.image_features).softmax(1).max(1).values
    by_card = torch.tensor([r["probability_1"] for r in predict(folder, [str(new_csv)], top_k=1, device="cpu")])
    assert torch.allclose(by_card, expected, atol=1e-4)
    in_fp32 = predict(folder, [str(new_csv)], top_k=1, device="cpu", precision="fp32")
    assert (torch.tensor([r["probability_1"] for r in in_fp32]) - expected).abs().max() > 1e-4


def _typed(hparams: list[str]) -> dict[str, int]:
    return {k: int(v) for k, v in (h.split("=") for h in hparams)}


def _templates(tmp_path: Path) -> str:
    from clipadapt.world import WORLD_TEMPLATES

    path = tmp_path / "templates.json"
    path.write_text(json.dumps(list(WORLD_TEMPLATES)))
    return str(path)


@pytest.fixture(scope="module")
def saved(domains, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "zeroshot"
    assert main(["adapt", "--dataset", str(domains[0]), "--model", "toyclip", "--method", "zeroshot",
                 "--output", str(folder), "--quiet"]) == 0  # fmt: skip
    return folder


def test_an_unreadable_image_is_listed_with_its_reason(saved: Path, domains, tmp_path: Path, capsys) -> None:
    images = sorted(str(p) for p in (domains[1].parent / "sketch").glob("*.png"))[:5]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = tmp_path / "out.csv"
    assert main(["predict", "--classifier", str(saved), *images, str(broken), "--output", str(out)]) == 0
    rows = _rows(out)
    assert [r["path"] for r in rows] == [*images, str(broken)]
    assert all(r["label_1"] and not r["error"] for r in rows[:5])
    assert rows[5]["label_1"] == "" and rows[5]["error"], "listed with the reason, not dropped"
    captured = capsys.readouterr()
    assert "cannot read" in captured.err and "1 unreadable" in captured.out
    assert not list(tmp_path.glob("out.csv.partial*"))


def test_a_wrong_backbone_is_a_clear_error_and_writes_nothing(
    saved: Path, domains, tmp_path: Path, capsys, tiny_openclip: str
) -> None:
    from clipadapt.artifact import load_classifier
    from clipadapt.backbones import load_backbone
    from clipadapt.errors import ClipAdaptError

    out = tmp_path / "out.csv"
    argv = ["predict", "--classifier", str(saved), str(domains[1]), "--output", str(out)]
    assert main([*argv, "--model", tiny_openclip, "--pretrained", "random"]) == 2
    err = capsys.readouterr().err
    assert "was adapted on 'toyclip'" in err and tiny_openclip in err
    assert not list(tmp_path.iterdir()), "no output, not even a partial one"
    with pytest.raises(ClipAdaptError, match="adapted on 'toyclip'"):
        load_classifier(saved, backbone=load_backbone(tiny_openclip, "random", device="cpu"))
    assert load_classifier(saved, backbone=load_backbone("toyclip", device="cpu")).method == "zeroshot"


def test_an_interrupted_prediction_resumes_where_it_stopped(
    saved: Path, domains, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clipadapt.predict as predict_module

    reference = predict_module.predict_csv(saved, [str(domains[1])], tmp_path / "reference.csv", batch_size=4)
    original = predict_module.predict_images

    def interrupted(*args, **kwargs):
        for i, row in enumerate(original(*args, **kwargs)):
            if i == 10:
                raise KeyboardInterrupt
            yield row

    out = tmp_path / "out.csv"
    monkeypatch.setattr(predict_module, "predict_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_module.predict_csv(saved, [str(domains[1])], out, batch_size=4)
    assert not out.exists() and len(_rows(tmp_path / "out.csv.partial")) == 10
    monkeypatch.setattr(predict_module, "predict_images", original)
    summary = predict_module.predict_csv(saved, [str(domains[1])], out, batch_size=4)
    assert summary.resumed == 10 and summary.images == reference.images == 24
    assert _rows(out) == _rows(tmp_path / "reference.csv")
    assert b"\r" not in out.read_bytes(), "one line ending throughout, resumed or not"
    assert not list(tmp_path.glob("*.partial*"))


def test_collect_images_takes_files_folders_globs_and_csvs(domains, tmp_path: Path) -> None:
    from clipadapt.errors import ClipAdaptError
    from clipadapt.predict import collect_images

    folder = domains[1].parent / "sketch"
    files = sorted(str(p) for p in folder.glob("*.png"))
    assert collect_images([str(folder)]) == files
    assert collect_images([str(folder / "0000*.png")]) == files[:10]
    listed = [str(Path(f).resolve()) for f in files]  # a manifest's paths, resolved against its folder
    assert collect_images([str(domains[1]), files[0]]) == list(dict.fromkeys([*listed, files[0]]))
    with pytest.raises(ClipAdaptError, match="no such file"):
        collect_images([str(tmp_path / "missing.png")])
    with pytest.raises(ClipAdaptError, match="matches no file"):
        collect_images([str(tmp_path / "*.jpg")])


def test_python_api_predict_matches_the_cli(saved: Path, domains, tmp_path: Path) -> None:
    from clipadapt.predict import predict

    rows = predict(saved, [str(domains[1])], top_k=2)
    assert len(rows) == 24 and set(rows[0]) == {"path", "label_1", "probability_1", "label_2", "probability_2",
                                                 "error"}  # fmt: skip
    assert main(["predict", "--classifier", str(saved), str(domains[1]), "--output", str(tmp_path / "p.csv"),
                 "--top_k", "2", "--quiet"]) == 0  # fmt: skip
    assert [r["label_1"] for r in _rows(tmp_path / "p.csv")] == [r["label_1"] for r in rows]


def test_adapt_refuses_to_overwrite_a_classifier(saved: Path, domains, capsys) -> None:
    argv = ["adapt", "--dataset", str(domains[0]), "--model", "toyclip", "--method", "zeroshot"]
    assert main([*argv, "--output", str(saved)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_the_api_tour_example_runs(tmp_path: Path) -> None:
    """README's Python API section is examples/api_tour.py: it must run as written."""
    script = Path(__file__).resolve().parents[1] / "examples" / "api_tour.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "inmap, through the runner: top-1" in done.stdout and "20 new images" in done.stdout


def test_a_classifier_adapted_on_a_feature_file_needs_a_named_backbone_of_its_dimension(
    domains, tmp_path: Path, capsys
) -> None:
    import numpy as np

    from helpers import make_feature_arrays

    features = tmp_path / "feats.npz"
    np.savez(features, **make_feature_arrays(d=16))
    folder = tmp_path / "clf"
    assert main(["adapt", "--features", str(features), "--method", "inmap", "--output", str(folder), "--quiet"]) == 0
    assert json.loads((folder / "card.json").read_text())["data"]["images"] == 60
    out = tmp_path / "out.csv"
    argv = ["predict", "--classifier", str(folder), str(domains[1]), "--output", str(out)]
    assert main(argv) == 2
    assert "names no loadable backbone" in capsys.readouterr().err
    assert main([*argv, "--model", "toyclip"]) == 2
    assert "works on 16-dimensional features but toyclip produces 64-dimensional" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("out.csv*"))


def test_predict_on_the_adaptation_images_gives_the_cards_classifier_metrics(domains, tmp_path: Path) -> None:
    folder, out = tmp_path / "clf", tmp_path / "p.csv"
    assert main(["adapt", "--dataset", str(domains[0]), "--model", "toyclip", "--method", "transclip", "--output",
                 str(folder), "--quiet"]) == 0  # fmt: skip
    card = json.loads((folder / "card.json").read_text())
    assert main(["predict", "--classifier", str(folder), str(domains[0]), "--output", str(out), "--quiet"]) == 0
    truth = {str((domains[0].parent / row["path"]).resolve()): row["label"] for row in _rows(domains[0])}
    hits = [row["label_1"] == truth[row["path"]] for row in _rows(out)]
    assert card["classifier_metrics"]["acc1"] == pytest.approx(sum(hits) / len(hits))
    assert "transductive" in card["metrics_of"]


def test_top_k_above_the_class_count_writes_no_empty_columns(saved: Path, domains, tmp_path: Path, caplog) -> None:
    from clipadapt.predict import predict_csv

    classes = len(json.loads((saved / "card.json").read_text())["classnames"])
    predict_csv(saved, [str(domains[1])], tmp_path / "p.csv", top_k=classes + 5, batch_size=8)
    rows = _rows(tmp_path / "p.csv")
    assert f"label_{classes}" in rows[0] and f"label_{classes + 1}" not in rows[0]
    assert all(row[f"label_{classes}"] for row in rows)


def test_a_file_named_two_ways_is_one_file(domains, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipadapt.predict import collect_images

    image = sorted((domains[1].parent / "sketch").glob("*.png"))[0]
    monkeypatch.chdir(image.parent)
    assert collect_images([f"./{image.name}", str(image), image.name]) == [f"./{image.name}"]
