"""The package's imports run one way: every import (also inside functions) goes to the importing module's own
unit or to a lower layer of :data:`clipadapt.LAYERS`, and every unit of the package has its layer."""

from __future__ import annotations

import ast
from pathlib import Path

import clipadapt

PACKAGE = Path(clipadapt.__file__).parent
LAYER = {unit: depth for depth, (units, _) in enumerate(clipadapt.LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """``clipadapt.methods.base`` → ``methods``; the package itself (``from clipadapt import X``) → None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imported_units(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "clipadapt":
                found |= {
                    a.name for a in node.names if (PACKAGE / a.name).exists() or (PACKAGE / f"{a.name}.py").exists()
                }
            elif node.module.startswith("clipadapt."):
                found.add(unit_of(node.module))
        elif isinstance(node, ast.Import):
            found |= {unit_of(a.name) for a in node.names if a.name.startswith("clipadapt.")}
    return found


def package_units() -> set[str]:
    return {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}  # fmt: skip


def test_every_unit_has_a_layer() -> None:
    assert package_units() == set(LAYER)


def test_imports_run_down_the_layers() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0].removesuffix(".py")
        if own == "__init__":
            assert imported_units(path) == set(), "the package's face imports nothing"
            continue
        for unit in imported_units(path) - {own}:
            if LAYER[unit] >= LAYER[own]:
                upward.append(f"{relative} imports clipadapt.{unit} (layer {LAYER[unit]} ≥ its own {LAYER[own]})")
    assert not upward, "\n".join(upward)
