"""Progress on long work: redrawn bars on a terminal, one line per stage elsewhere (CI, a log file); one
switch silences both (``--quiet``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_QUIET = False
HEARTBEAT_S = 300.0  # a stage logged as lines says how far it is every this many seconds


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def is_quiet() -> bool:
    return _QUIET


class StageLine(Generic[T]):
    """Iterates like a progress bar, but writes one line to stderr when the stage ends (items, seconds, the
    last ``set_postfix`` values), and one every :data:`HEARTBEAT_S` seconds while it runs."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None, unit: str) -> None:
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else _length(iterable)
        self.postfix: dict[str, Any] = {}

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def _line(self, done: int, start: float, end: str = "") -> None:
        count = f"{done}/{self.total}" if self.total is not None else str(done)
        values = "".join(f", {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {count} {self.unit}{end} in {time.perf_counter() - start:.1f} s{values}", file=sys.stderr)

    def __iter__(self) -> Iterator[T]:
        start = last = time.perf_counter()
        done = 0
        for item in self.iterable:
            yield item
            done += 1
            if time.perf_counter() - last >= HEARTBEAT_S:
                last = time.perf_counter()
                self._line(done, start, " so far")
        self._line(done, start)


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> tqdm | StageLine[T]:
    """Wrap ``iterable`` in a progress bar where stderr is a terminal, else in a :class:`StageLine`; silent in
    quiet mode. Either has ``set_postfix`` for running values."""
    if not _QUIET and not sys.stderr.isatty():
        return StageLine(iterable, desc, total, unit)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=_QUIET, dynamic_ncols=True, leave=False)
