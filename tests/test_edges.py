"""Right answers at the edges: what a new user meets in the first hour (reports, cards, tables, messages,
overwrites), each checked on what the user sees."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from clipadapt.cli import build_parser, main
from clipadapt.errors import plural
from clipadapt.paths import PLACEHOLDERS
from helpers import make_feature_arrays, make_image_folder, make_modality_gap


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def gap_file(tmp_path: Path) -> Path:
    path = tmp_path / "gap.npz"
    np.savez(path, **make_modality_gap(n=300))
    return path


# -- reports and --skip_existing -------------------------------------------------------------------------


def test_a_skipped_rerun_reads_its_runs_back_and_keeps_the_report_complete(gap_file: Path, tmp_path: Path, capsys):
    out, report = str(tmp_path / "res" / "{method}.json"), tmp_path / "res" / "report.html"
    argv = ["eval", "--features", str(gap_file), "--method", "zeroshot", "inmap", "--output", out]
    assert _run(capsys, *argv, "--report", str(report), "--quiet")[0] == 0
    first = report.read_text()
    assert _run(capsys, *argv, "--report", str(report))[0] == 2, "an existing report needs --overwrite"
    code, printed, _ = _run(capsys, *argv, "--report", str(report), "--skip_existing")
    assert code == 0 and printed == "", "nothing ran"
    again = report.read_text()
    assert "<td>inmap</td>" in again and "<td>zeroshot</td>" in again
    assert abs(len(again) - len(first)) < 100, "the same report (only its time stamp differs)"

    (tmp_path / "res" / "inmap.report.npz").unlink()  # a result written without --report: its run runs again
    code, printed, _ = _run(capsys, *argv, "--report", str(report), "--skip_existing")
    assert code == 0 and "inmap" in printed and "zeroshot" not in printed
    assert "<td>inmap</td>" in report.read_text() and "<td>zeroshot</td>" in report.read_text()


# -- the card of a saved classifier -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["reclip-lp", "transclip"])
def test_the_card_says_what_its_metrics_are_and_what_predict_will_give(
    method: str, gap_file: Path, tmp_path: Path, capsys
) -> None:
    from clipadapt.artifact import load_classifier
    from clipadapt.features import load_feature_file
    from clipadapt.kernels.metrics import classification_metrics

    folder, report = tmp_path / "clf", tmp_path / "clf" / "report.html"
    argv = ["adapt", "--features", str(gap_file), "--method", method, "--output", str(folder)]
    assert _run(capsys, *argv, "--report", str(report))[0] == 0
    card = json.loads((folder / "card.json").read_text())
    assert "transductive predictions" in card["metrics_of"] and "what predict gives" in card["classifier_metrics_of"]
    features = load_feature_file(gap_file)
    own = classification_metrics(load_classifier(folder).logits(features.image_features), features.labels)
    assert card["classifier_metrics"]["acc1"] == pytest.approx(own["acc1"]), "what predict gives on these images"
    assert 0 <= card["classifier_metrics"]["agreement_with_transductive"] <= 1
    assert json.loads((folder / "result.json").read_text())["classifier_metrics"] == card["classifier_metrics"]
    page = report.read_text()
    assert "<th>saved classifier top-1 %</th>" in page and f"{100 * own['acc1']:.2f}" in page


def test_a_zero_shot_card_says_its_metrics_are_the_classifiers(gap_file: Path, tmp_path: Path, capsys) -> None:
    assert (
        _run(capsys, "adapt", "--features", str(gap_file), "--method", "zeroshot", "--output", str(tmp_path / "z"))[0]
        == 0
    )
    card = json.loads((tmp_path / "z" / "card.json").read_text())
    assert "what predict gives" in card["metrics_of"] and "classifier_metrics" not in card


def test_adapt_overwrite_leaves_nothing_of_the_old_classifier(gap_file: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "clf"
    argv = ["adapt", "--features", str(gap_file), "--method", "zeroshot", "--output", str(folder), "--quiet"]
    assert _run(capsys, *argv, "--report", str(folder / "report.html"))[0] == 0
    assert (folder / "report.html").is_file() and (folder / "report_figures").is_dir()
    assert _run(capsys, *argv)[0] == 2, "replacing needs --overwrite"
    assert _run(capsys, *argv, "--overwrite")[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "classifier.safetensors", "result.json"]


# -- build --------------------------------------------------------------------------------------------------


def _results(tmp_path: Path, capsys, features: Path, name: str, *extra: str) -> list[str]:
    out = tmp_path / name / "{dataset}_{method}_{seed}.json"
    assert _run(capsys, "eval", "--features", str(features), "--output", str(out), "--quiet", *extra)[0] == 0
    return sorted(str(p) for p in (tmp_path / name).glob("*.json"))


def test_build_averages_only_true_repeats_and_means_over_shared_datasets(tmp_path: Path, capsys) -> None:
    arrays = make_feature_arrays(n=90)
    np.savez(tmp_path / "a.npz", **arrays)
    np.savez(tmp_path / "b.npz", **{**arrays, "classnames": np.array(["cat", "dog", "bird"])})  # other names
    np.savez(tmp_path / "c.npz", **{**arrays, "dataset": np.array("other")})
    results = [
        *_results(tmp_path, capsys, tmp_path / "a.npz", "a", "--method", "zeroshot", "inmap", "--seed", "0", "1"),
        *_results(tmp_path, capsys, tmp_path / "b.npz", "b", "--method", "inmap"),
        *_results(tmp_path, capsys, tmp_path / "a.npz", "t", "--method", "inmap", "--hparam", "threshold=1"),
        *_results(tmp_path, capsys, tmp_path / "c.npz", "c", "--method", "zeroshot"),
    ]
    code, text, _ = _run(capsys, "build", "--pivot", *results)
    assert code == 0
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].split("|")[3:-1]]
    assert sorted(header) == ["inmap [1]", "inmap [2]", "zeroshot"], "inmap at threshold 1 is another setting"
    rows = {line.split("|")[1].strip(): line for line in lines[2:] if line.startswith("| ")}
    assert "2 seeds" in rows["synthetic (class names/prompts 1)"], "the two seeds of one setting"
    assert "seeds" not in rows["synthetic (class names/prompts 2)"], "other class names: not a repeat"
    mean = next(line for line in lines if line.startswith("| mean top-1"))
    assert "over the 1 row(s) every column has" in mean, "only the row with every column: not b's, not other's"
    assert any(line.startswith("- inmap [2]: threshold=1") for line in lines)
    assert "None" not in text

    code, text, _ = _run(capsys, "build", "--pivot", *results[:4], results[-1])  # zeroshot and inmap [1] only
    mean = next(line for line in text.splitlines() if line.startswith("| mean top-1"))
    assert "over the 1 row(s) every column has" in mean, "the dataset that lacks inmap stays out of the mean"


def test_build_writes_json_and_refuses_formats_it_does_not_write(feature_file_path: Path, tmp_path: Path, capsys):
    results = _results(tmp_path, capsys, feature_file_path, "r", "--method", "zeroshot", "inmap")
    code, printed, _ = _run(capsys, "build", *results, "--json")
    rows = json.loads(printed)
    assert code == 0 and [r["method"] for r in rows] == ["inmap", "zeroshot"] and "config" in rows[0]
    assert _run(capsys, "build", *results, "--output", str(tmp_path / "t.json"))[0] == 0
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    code, _, err = _run(capsys, "build", *results, "--output", str(tmp_path / "table.xlsx"))
    assert code == 2 and ".csv, .md, .json" in err and not (tmp_path / "table.xlsx").exists()
    assert _run(capsys, "build", *results, "--output", str(tmp_path / "t.json"))[0] == 2, "no silent overwrite"
    twice = str(Path(results[0]).parent / ".." / "r" / Path(results[0]).name)  # the same file, spelt another way
    assert len(json.loads(_run(capsys, "build", results[0], twice, "--json")[1])) == 1


@pytest.fixture
def feature_file_path(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic.npz"
    np.savez(path, **make_feature_arrays())
    return path


# -- messages -----------------------------------------------------------------------------------------------


def test_files_that_are_not_feature_files_say_so(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    np.savez(tmp_path / "weights.npz", weights=np.zeros(3))
    (tmp_path / "text.npz").write_text("hello")
    for name, says in [("objects", "pickled Python objects"), ("weights", "lacks image_features, text_features"),
                       ("text", "not an .npz archive")]:  # fmt: skip
        code, _, err = _run(capsys, "eval", "--features", str(tmp_path / f"{name}.npz"))
        assert code == 2 and "is not a clipadapt feature file" in err and says in err, err
        assert "allow_pickle" not in err


def test_one_class_is_an_error_not_a_perfect_score(tmp_path: Path, capsys) -> None:
    arrays = make_feature_arrays(c=1)
    np.savez(tmp_path / "one.npz", **arrays)
    code, out, err = _run(capsys, "eval", "--features", str(tmp_path / "one.npz"))
    assert code == 2 and "one class" in err and out == ""
    folder = make_image_folder(tmp_path / "images")
    for name in ("green", "blue"):
        for f in (folder / name).iterdir():
            f.unlink()
        (folder / name).rmdir()
    code, _, err = _run(capsys, "extract", "--dataset", str(folder), "--model", "toyclip", "--output",
                        str(tmp_path / "f.npz"))  # fmt: skip
    assert code == 2 and "one class ('red')" in err and "--classnames" in err


def test_unreadable_images_get_stable_specific_reasons(tmp_path: Path) -> None:
    import io

    from PIL import Image

    from clipadapt.data.sources import UnreadableImage, open_image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buffer, "PNG")
    cases = {"empty.png": b"", "notes.jpg": b"just some text", "cut.png": buffer.getvalue()[:60]}
    reasons = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnreadableImage) as caught:
            open_image(tmp_path / name)
        reasons[name] = str(caught.value)
        with pytest.raises(UnreadableImage) as again:
            open_image(io.BytesIO(data))
        assert str(again.value) == reasons[name], "the same reason for bytes and files"
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["notes.jpg"].startswith("not an image")
    assert reasons["cut.png"].startswith("truncated or corrupt PNG file")
    assert not any("0x" in r or "BytesIO" in r for r in reasons.values())


def test_pretrained_weights_offline_fail_fast_in_one_quiet_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from clipadapt.backbones import hub

    monkeypatch.setattr(hub, "reachable", lambda url, timeout=hub.PROBE_SECONDS: False)
    folder = make_image_folder(tmp_path / "images")
    start = time.perf_counter()
    code, _, err = _run(capsys, "eval", "--dataset", str(folder), "--model", "ViT-B-32", "--pretrained", "openai",
                          "--model_cache_dir", str(tmp_path / "empty-cache"), "--quiet")  # fmt: skip
    assert code == 2 and time.perf_counter() - start < 10
    assert err.count("\n") == 1 and "not in the local cache" in err and "--pretrained /path/to" in err, err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _run(capsys, "eval", "--dataset", str(folder), "--model", "hf:openai/clip-vit-base-patch32",
                        "--model_cache_dir", str(tmp_path / "empty-cache"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "HF_HUB_OFFLINE is set" in err


def test_cached_hub_weights_load_offline_without_asking_the_network(tmp_path: Path, monkeypatch) -> None:
    from clipadapt.backbones import hub
    from clipadapt.backbones.openclip import download_guard

    monkeypatch.setattr(hub, "reachable", lambda url, timeout=hub.PROBE_SECONDS: False)
    snapshot = tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    from huggingface_hub import constants

    with download_guard("ViT-B-32", "openai", str(tmp_path)):
        assert constants.HF_HUB_OFFLINE, "the hub library serves the cache without retrying the network"
    assert not constants.HF_HUB_OFFLINE


def test_toyclip_with_random_weights_says_what_to_do(tmp_path: Path, capsys) -> None:
    folder = make_image_folder(tmp_path / "images")
    code, _, err = _run(capsys, "eval", "--dataset", str(folder), "--model", "toyclip", "--pretrained", "random")
    assert code == 2 and "ToyCLIP has no random weights: leave out --pretrained" in err and "toyclip.train" not in err


# -- one overwrite rule, and small things -----------------------------------------------------------------


def test_every_command_that_writes_asks_before_replacing(feature_file_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    argv = ["eval", "--features", str(feature_file_path), "--output", str(out), "--quiet"]
    assert _run(capsys, *argv)[0] == 0
    before = out.read_text()
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "--overwrite" in err and "--skip_existing" in err and out.read_text() == before
    assert _run(capsys, *argv, "--overwrite")[0] == 0
    folder = make_image_folder(tmp_path / "images")
    extract = ["extract", "--dataset", str(folder), "--model", "toyclip", "--output", str(tmp_path / "f.npz")]
    assert _run(capsys, *extract)[0] == 0
    code, _, err = _run(capsys, *extract)
    assert code == 2 and "exists; pass --overwrite" in err
    assert _run(capsys, *extract, "--overwrite")[0] == 0


def test_eval_help_lists_every_output_placeholder() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert all("{" + p + "}" in text for p in PLACEHOLDERS)


def test_a_resumed_extraction_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from clipadapt.backbones import load_backbone
    from clipadapt.data import open_source
    from clipadapt.features import FeatureStore

    backbone, source = load_backbone("toyclip", device="cpu"), open_source(str(make_image_folder(tmp_path / "i")))
    store = FeatureStore(tmp_path / "cache")
    store.extract(backbone, source, batch_size=4, num_workers=0, chunk_size=4)
    [entry] = (tmp_path / "cache").iterdir()
    (entry / "chunk-00002.npz").unlink()
    with caplog.at_level("INFO", logger="clipadapt"):
        store.extract(backbone, source, batch_size=4, num_workers=0)
        store.extract(backbone, source, batch_size=4, num_workers=0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("resuming the extraction of i: 4 of 5 chunks already cached" in m for m in messages)
    assert any("using the cached features of i" in m for m in messages)


def test_a_few_shot_error_names_the_class(tmp_path: Path, capsys) -> None:
    arrays = make_feature_arrays(n=30)
    arrays["labels"][arrays["labels"] == 2] = 0
    arrays["labels"][:2] = 2
    np.savez(tmp_path / "f.npz", **arrays)
    code, _, err = _run(capsys, "eval", "--features", str(tmp_path / "f.npz"), "--method", "linear-probe",
                        "--shots", "4")  # fmt: skip
    assert code == 2 and "class 'class2' has 2 labelled rows" in err


def test_counts_are_spelled_in_the_singular_for_one() -> None:
    assert [plural(1, "image"), plural(2, "image"), plural(1, "class"), plural(3, "class")] == [
        "1 image", "2 images", "1 class", "3 classes"]  # fmt: skip


def test_figures_name_the_classes(tmp_path: Path) -> None:
    from clipadapt.report.figures import confusion_figure, projection_figure
    from clipadapt.report.views import DatasetView, RunView

    names = [f"scene {i}" for i in range(19)]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, 100)
    record = {"method": "zeroshot", "setting": "zero-shot", "metrics": {}, "seconds": 0.0, "seed": 0}
    run = RunView(record, labels, labels, rng.normal(size=(100, 8)), labels, rng.normal(size=(19, 8)))
    view = DatasetView("d", names, [run])
    confusion = confusion_figure(view)
    assert [t.get_text() for t in confusion.axes[0].get_xticklabels()] == names
    legend = projection_figure(view).legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert "class vector" in texts and "scene 0" in texts and "scene 18" in texts
