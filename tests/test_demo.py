from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipadapt.backbones.toyclip import BUNDLED
from clipadapt.cli import main
from clipadapt.methods import list_methods
from clipadapt.world import CLASSES

pytestmark = pytest.mark.skipif(not (BUNDLED / "toyclip.safetensors").exists(), reason="bundled weights missing")


def test_demo_runs_the_image_pipeline_and_its_table_matches_the_jsons(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--output_dir", str(out), "--domains", "night", "sketch", "--images", "40", "--pool", "60"]
    argv += ["--shots", "1", "--hparam", "iterations=300"]  # CMM's 16 000 iterations are for real runs
    argv += ["--hparam", "epochs=1"]  # clip-enhance, reclip and fair: one epoch shows the pipeline works
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    results = sorted((out / "results").glob("*.json"))
    expected = {f"world-{d}_{m.name}_seed0.json" for d in ("night", "sketch") for m in list_methods()}
    assert {p.name for p in results} == expected, "every registered method runs on every domain"
    for path in results:
        record = json.loads(path.read_text())
        acc1, method, setting = record["metrics"]["acc1"], record["method"], record["setting"]
        shots = 1 if setting == "few-shot" else ""
        cells = [record["dataset"], "toyclip", "bundled", method, setting, shots, "whole set", 0, f"{acc1:.4f}"]
        row = "| " + " | ".join(map(str, cells)) + " |"
        assert row in printed, "the printed table is made from the written records"
        assert row in (out / "report.md").read_text()
        assert 0.0 <= record["metrics"]["acc1"] <= 1.0
    manifest = (out / "domains" / "night.csv").read_text().splitlines()
    assert manifest[0] == "path,label,split" and len(manifest) == 101
    assert sum(line.endswith(",test") for line in manifest) == 40
    assert (out / "samples.png").stat().st_size > 0
    cached = list((out / "cache").rglob("chunk-*.npz"))
    assert main([*argv, "--quiet"]) == 0, "a second run reuses the domains and the feature cache"
    assert sorted((out / "cache").rglob("chunk-*.npz")) == sorted(cached)


def test_demo_rejects_unknown_domains(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--output_dir", str(tmp_path), "--domains", "nite"]) == 2
    assert "unknown domain 'nite'" in capsys.readouterr().err


def _counts(manifest: Path, split: str) -> list[int]:
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:]]
    return [sum(row[1] == name and row[2] == split for row in rows) for name in CLASSES]


def test_demo_long_tailed_domains(tmp_path: Path, capsys) -> None:
    argv = ["demo", "--output_dir", str(tmp_path), "--images", "240", "--pool", "48", "--method", "zeroshot", "inmap"]
    assert main([*argv, "--domains", "painting", "faded", "--imbalance", "8", "--quiet"]) == 0
    test = _counts(tmp_path / "domains" / "painting-longtail8.csv", "test")
    assert test[0] > 4 * test[-1] > 0, "the first class is much larger than the last"
    assert _counts(tmp_path / "domains" / "painting-longtail8.csv", "train") == [2] * len(CLASSES), "balanced pool"
    assert (tmp_path / "results" / "world-painting-longtail8_zeroshot_seed0.json").exists()
    assert (tmp_path / "domains" / "faded-longtail8.csv").exists(), "--imbalance applies to every domain"
    assert main([*argv, "--domains", "faded", "--quiet"]) == 0
    assert (tmp_path / "results" / "world-faded-longtail10_inmap_seed0.json").exists(), "faded's own imbalance"


def test_demo_regenerates_a_domain_when_its_parameters_change(tmp_path: Path, capsys) -> None:
    argv = ["demo", "--output_dir", str(tmp_path), "--domains", "night", "--pool", "10", "--quiet"]
    argv += ["--method", "zeroshot"]
    assert main([*argv, "--images", "30"]) == 0
    assert main([*argv, "--images", "20"]) == 0
    lines = (tmp_path / "domains" / "night.csv").read_text().splitlines()[1:]
    assert sum(line.endswith(",test") for line in lines) == 20, "no stale manifest from the first run"
    assert len(list((tmp_path / "domains" / "night").glob("*.png"))) == 30
    record = json.loads((tmp_path / "results" / "world-night_zeroshot_seed0.json").read_text())
    assert record["dataset"] == "world-night"
