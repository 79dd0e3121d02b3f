"""Matching the class names a user gives to the labels a data source holds, by name.

A class-folder dataset labels its images by folder name, a CSV manifest by the ``label`` column, WebDataset
shards by each sample's ``cls`` member. When the user also gives a list of class names (``--classnames``),
each of those labels is matched to a name of the list — never to a position in it: first exactly, then
with the folder-name rules (``_`` read as a space, runs of spaces as one, case ignored). A label that
matches no name is an error that names it; names without images are fine (a class list is often a
superset of what a folder holds) and are listed in one warning.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from clipadapt.errors import ClipAdaptError, plural

log = logging.getLogger("clipadapt")
SHOWN = 5  # names listed in one message


def folder_name_to_class(name: str) -> str:
    """The class name a folder stands for: ``_`` read as a space."""
    return name.replace("_", " ")


def name_key(name: str) -> str:
    """What two spellings of one class share: ``_`` as a space, one space between words, case ignored."""
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().casefold()


def listing(names: Sequence[str], limit: int = SHOWN) -> str:
    """``'a', 'b', 'c'`` (+N more)."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_unique(classnames: Sequence[str], where: str) -> None:
    """Raise, naming it, when a class name is given twice."""
    repeated = [name for name, count in Counter(classnames).items() if count > 1]
    if repeated:
        raise ClipAdaptError(f"{where} repeats {listing(repeated)}; every class name must be distinct")


def match_labels(found: Sequence[str], classnames: Sequence[str], where: str, kind: str = "label") -> list[int]:
    """The index in ``classnames`` of every name in ``found`` (folder names, CSV labels, ``cls`` values).

    Raises a :class:`ClipAdaptError` naming every ``kind`` of ``found`` that matches no class name, or
    that matches two only under the folder-name rules.
    """
    exact = {name: i for i, name in enumerate(classnames)}
    loose: dict[str, list[int]] = {}
    for i, name in enumerate(classnames):
        loose.setdefault(name_key(name), []).append(i)
    indices: list[int] = []
    unmatched: list[str] = []
    for name in found:
        if name in exact:
            indices.append(exact[name])
            continue
        candidates = loose.get(name_key(name), [])
        if len(candidates) > 1:
            raise ClipAdaptError(
                f"{where}: the {kind} {name!r} matches {listing([classnames[i] for i in candidates])}; "
                "spell it as one of them exactly"
            )
        indices.append(candidates[0] if candidates else -1)
        if not candidates:
            unmatched.append(name)
    if unmatched:
        unique = list(dict.fromkeys(unmatched))
        raise ClipAdaptError(
            f"{where}: {plural(len(unique), kind)} without a matching class name: {listing(unique)} (matched by "
            "name, '_' read as a space, case ignored); add them to the class names or leave those images out"
        )
    return indices


def warn_absent_classes(labels: np.ndarray, classnames: Sequence[str], where: str) -> None:
    """One warning listing the class names that no labelled image has (they stay candidates)."""
    counts = np.bincount(labels, minlength=len(classnames))
    absent = [name for name, count in zip(classnames, counts, strict=True) if count == 0]
    if absent:
        log.warning(
            "%s: %d of %s have no image: %s (they stay candidates; if that is a mistake, check the class names)",
            where, len(absent), plural(len(classnames), "class name"), listing(absent),
        )  # fmt: skip
