from __future__ import annotations

import pytest

from clipadapt import progress as progress_module
from clipadapt.progress import StageLine, progress, set_quiet


def test_off_a_terminal_each_stage_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(range(5), desc="fitting", unit="epoch")  # pytest's stderr is not a terminal
    assert isinstance(bar, StageLine)
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.2f}")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fitting: 5/5 epoch in ") and lines[0].endswith("loss=0.20")


def test_long_stages_say_how_far_they_are(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "HEARTBEAT_S", 0.0)
    assert list(progress(iter("abc"), desc="reading", unit="file")) == ["a", "b", "c"]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in lines] == ["reading: 1 file so far", "reading: 2 file so far",
                                                         "reading: 3 file so far", "reading: 3 file"]  # fmt: skip


def test_quiet_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    set_quiet(True)
    try:
        assert sum(progress(range(3), desc="quiet")) == 3
    finally:
        set_quiet(False)
    assert capsys.readouterr().err == ""
