"""The documentation: a README a newcomer reads in five minutes whose tour runs as written, pages whose links
resolve, and no history outside the changelog."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from clipadapt.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["methods", "results", "performance", "world", "cli", "api", "faithfulness"]
DOCS = [ROOT / "README.md", *(ROOT / "docs" / f"{page}.md" for page in PAGES)]


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_the_readme_is_a_front_page_and_every_page_exists() -> None:
    assert len((ROOT / "README.md").read_text()) <= 15_000
    assert all(path.is_file() for path in DOCS)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_link_resolves(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or (fragment and linked.suffix == ".md" and fragment not in anchors(linked)):
            broken.append(target)
    assert not broken, f"{path.name}: {broken}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_documentation_describes_the_software_as_it_is(path: Path) -> None:
    history = re.findall(r"issue [0-9]|this release|before → after", path.read_text(), flags=re.I)
    assert not history, f"{path.name} tells history ({history}); it belongs in CHANGELOG.md"


def tour_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A five-minute tour") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("clipadapt ")]


def test_the_readme_tour_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    commands = tour_commands()
    assert [argv[0] for argv in commands] == ["demo", "eval", "adapt", "predict"]
    for argv in commands:
        assert main([*argv, "--quiet"]) == 0, argv
    assert (tmp_path / "night_clf" / "report.html").is_file()
    rows = (tmp_path / "night_predictions.csv").read_text().splitlines()
    assert rows[0].startswith("path,label_1,probability_1") and len(rows) > 100
