"""The HTML report: its numbers, its sections, and how it renders in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipadapt.backbones.toyclip import BUNDLED
from clipadapt.cli import main

SECTIONS = ["accuracy", "per-class", "confusion", "prediction-counts", "pseudo-labels", "projection"]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_toyclip = pytest.mark.skipif(not (BUNDLED / "toyclip.safetensors").exists(), reason="bundled weights missing")


def _run(labels, predictions, method="inmap"):
    from clipadapt.report.views import RunView

    record = {"method": method, "setting": "transductive", "metrics": {}, "seconds": 0.0, "seed": 0}
    return RunView(record, np.array(predictions), np.array(labels), np.zeros((1, 2)), np.zeros(1, int), np.eye(3, 2))


def test_confusion_rows_sum_to_one_and_per_class_accuracy_is_its_diagonal():
    from clipadapt.report.figures import confusion, per_class_accuracy

    run = _run([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2])
    matrix = confusion(run, 4)
    assert np.allclose(matrix[:3].sum(1), 1) and matrix[3].sum() == 0
    assert np.allclose(matrix[0], [2 / 3, 1 / 3, 0, 0])
    accuracy = per_class_accuracy(run, 4)
    assert np.allclose(accuracy[:3], [2 / 3, 1 / 2, 1]) and np.isnan(accuracy[3]), "absent classes are NaN"


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--hide-scrollbars"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@needs_toyclip
def test_the_report_renders_in_headless_chromium_with_every_section(tmp_path: Path, capsys) -> None:
    if CHROMIUM is None:
        if os.environ.get("CLIPADAPT_REQUIRE_BROWSER"):
            pytest.fail("CLIPADAPT_REQUIRE_BROWSER is set but no Chromium was found")
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    from clipadapt.demo import write_domain_manifest

    manifest = write_domain_manifest(tmp_path / "world", "night", n_test=60, n_pool=0, seed=0)
    report = tmp_path / "report.html"
    argv = ["adapt", "--dataset", str(manifest), "--model", "toyclip", "--method", "reclip", "--hparam", "epochs=2"]
    assert main([*argv, "--hparam", "k=3", "--output", str(tmp_path / "clf"), "--report", str(report), "--quiet"]) == 0

    dom = _chromium(["--dump-dom", report.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr
    for section in SECTIONS:
        match = re.search(rf'<section data-section="{section}">(.*?)</section>', dom.stdout, re.S)
        assert match, f"section {section!r} missing from the rendered page"
        assert ("<table>" if section == "accuracy" else '<img alt="') in match.group(1), f"{section} is empty"
    assert "reclip" in dom.stdout and "zeroshot" in dom.stdout, "adapted method beside zero-shot"
    assert len(list((tmp_path / "report_figures").glob("*.png"))) == len(SECTIONS) - 1

    screenshot = tmp_path / "report.png"
    shot = _chromium([f"--screenshot={screenshot}", "--window-size=1200,2400", report.as_uri()], tmp_path)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.shape == (2400, 1200)
    rows_with_ink = (pixels < 200).any(axis=1).mean()
    assert rows_with_ink > 0.3, "the page shows text and figures, not a blank canvas"


@needs_toyclip
def test_eval_report_adds_zero_shot_and_says_what_it_cannot_show(tmp_path: Path, capsys) -> None:
    from clipadapt.demo import write_domain_manifest
    from clipadapt.world import CLASSES

    manifest = write_domain_manifest(tmp_path / "world", "sketch", n_test=30, n_pool=0, seed=0)
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("\n".join(line.split(",")[0] for line in manifest.read_text().splitlines()) + "\n")
    (tmp_path / "sketch").symlink_to(tmp_path / "world" / "sketch")
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    report = tmp_path / "r.html"
    argv = ["eval", "--dataset", str(unlabelled), "--classnames", str(classes), "--model", "toyclip"]
    assert main([*argv, "--method", "inmap", "--report", str(report), "--quiet"]) == 0
    page = report.read_text()
    assert "<td>zeroshot</td>" in page and "<td>inmap</td>" in page
    assert "No labels: accuracy unavailable." in page and "No labels: confusion matrices need them." in page
    diagnostics = page.split("<h4>Label-free diagnostics</h4>")[1].split("</table>")[0]
    assert "<td>inmap</td><td>30</td><td>24</td>" in diagnostics, "the label-free run's diagnostics are shown"
    assert 'data-section="prediction-counts"><h3>Predictions per class</h3><p class="note">How many' in page
    assert main([*argv, "--method", "inmap", "--report", str(tmp_path / "r.pdf")]) == 2
    assert "end it in .html" in capsys.readouterr().err
