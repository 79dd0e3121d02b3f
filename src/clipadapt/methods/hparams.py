"""Hyperparameters typed by their annotations: one place that checks a method's values and reads them from
the command line (``KEY=VALUE``).

A field annotated ``Literal["a", "b"]`` takes one of those strings; ``bool``, ``int``, ``float`` and ``str``
what they say (an ``int`` is accepted for a ``float``); ``tuple[float, ...]`` a tuple (comma-separated on
the command line).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from clipadapt.errors import ClipAdaptError

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def hparam_types(cls: type) -> dict[str, Any]:
    """Field name → resolved annotation, for every dataclass field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def describe(hint: Any) -> str:
    """How a type reads in an error message: ``one of 'a', 'b'``, ``a float``, ``floats, comma-separated``."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"{typing.get_args(hint)[0].__name__}s, comma-separated"
    return f"{'an' if hint is int else 'a'} {hint.__name__}"


def checked(owner: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` as field ``key`` of method ``owner`` holds it (an int widened to float, a list to a tuple);
    a :class:`ClipAdaptError` when it is not of the field's type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        ok = value in typing.get_args(hint)
    elif origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, list | tuple) and all(_is(v, item) for v in value):
            return tuple(float(v) if item is float else v for v in value)
        ok = False
    else:
        ok = _is(value, hint)
        if ok and hint is float:
            value = float(value)
    if not ok:
        raise ClipAdaptError(f"{owner}: {key} must be {describe(hint)}, not {value!r}")
    return value


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def parsed(owner: str, key: str, text: str, hint: Any) -> Any:
    """The command line's ``KEY=VALUE`` text read as field ``key``'s type (then :func:`checked`)."""
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if text.lower() not in TRUE + FALSE:
                raise ValueError(text)
            value: Any = text.lower() in TRUE
        elif origin is tuple:
            item = typing.get_args(hint)[0]
            value = tuple(item(part) for part in text.split(",") if part.strip())
        elif origin is Literal or hint is str:
            value = text
        else:
            value = hint(text)
    except ValueError:
        raise ClipAdaptError(f"{owner}: {key}={text!r} is not {describe(hint)}") from None
    return checked(owner, key, value, hint)


def check_fields(method: Any) -> None:
    """Check (and widen) every hyperparameter of a method dataclass instance against its annotation."""
    for key, hint in hparam_types(type(method)).items():
        setattr(method, key, checked(method.name or type(method).__name__, key, getattr(method, key), hint))
