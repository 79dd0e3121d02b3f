"""User-facing errors: one clear line on the command line, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ClipAdaptError(Exception):
    """An error caused by the user's input or environment, shown as a single line by the CLI."""


class MethodUnavailable(ClipAdaptError):
    """The method cannot run on what it was given (its setting or needs are not met)."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ClipAdaptError:
    """Build the error for an unknown ``kind`` name, suggesting the closest known names."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if len(choices) <= 12:
        listing = f" (known: {', '.join(choices)})"
    elif kind in ("method", "dataset", "model"):
        listing = f" (see 'clipadapt list {kind}s')"
    else:
        listing = f" (known: {', '.join(choices[:12])}, …)"
    return ClipAdaptError(f"unknown {kind} {name!r}{hint}{'' if close else listing}")


def plural(count: int, noun: str) -> str:
    """``1 image``, ``2 images``, ``1 class``, ``3 classes`` (regular English plurals only)."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'sh', 'ch', 'x')) else 's'}"
