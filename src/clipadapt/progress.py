"""Progress bars that one switch silences (``--quiet``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def is_quiet() -> bool:
    return _QUIET


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    """Wrap ``iterable`` in a progress bar unless quiet mode is on (``set_postfix`` shows running values)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=_QUIET, dynamic_ncols=True, leave=False)
