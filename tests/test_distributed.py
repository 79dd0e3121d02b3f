"""torchrun: feature extraction split over processes (gloo on the CPU here), identical to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import make_image_folder

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
DATA = ["--model", "toyclip", "--batch_size", "8", "--chunk_size", "16", "--num_workers", "0", "--device", "cpu"]


def _run(command: list[str], cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLIPADAPT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_split_the_chunks_and_write_what_one_process_writes(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "images", per_class=30)  # 90 images: chunks 0..5 of 16
    two = _run([*TORCHRUN, "-m", "clipadapt", "extract", "--dataset", "images", *DATA, "--output", "two.npz",
                "--log_level", "debug"], tmp_path / "cache2", tmp_path)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "rank 0 of 2 encodes chunks [0, 2, 4]" in two.stderr
    assert "rank 1 of 2 encodes chunks [1, 3, 5]" in two.stderr
    assert two.stdout.count("wrote two.npz: 90 images") == 1, "rank 0 alone writes the file"

    one = _run([sys.executable, "-m", "clipadapt", "extract", "--dataset", "images", *DATA, "--output", "one.npz",
                "--quiet"], tmp_path / "cache1", tmp_path)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    with np.load(tmp_path / "two.npz") as a, np.load(tmp_path / "one.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[key], b[key]) for key in a.files), "identical to a one-process run"

    # eval: the extraction phase is shared (here: all cached already), rank 0 alone runs the method
    ev = _run([*TORCHRUN, "-m", "clipadapt", "eval", "--dataset", "images", *DATA, "--method", "zeroshot",
               "--output", "result.json", "--quiet"], tmp_path / "cache2", tmp_path)  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads((tmp_path / "result.json").read_text())["metrics"]["acc1"] >= 0


def test_commands_without_a_distributed_phase_refuse_torchrun_clearly(tmp_path: Path, monkeypatch, capsys) -> None:
    from clipadapt.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["list", "methods"]) == 2
    assert "list runs in one process" in capsys.readouterr().err
