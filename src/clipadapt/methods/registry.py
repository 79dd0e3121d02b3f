"""Methods registered by name."""

from __future__ import annotations

import dataclasses
from typing import Any

from clipadapt.errors import ClipAdaptError
from clipadapt.methods.base import Method
from clipadapt.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    return METHODS.register(cls.name)(cls)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (unknown names suggest close matches)."""
    return METHODS.get(name)


def build_method(name: str, hparams: dict[str, Any] | None = None) -> Method:
    """Instantiate method ``name`` with ``hparams`` overriding its defaults (unknown keys are an error)."""
    cls = get_method(name)
    known = {f.name: f for f in dataclasses.fields(cls)}
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ClipAdaptError(
            f"method {name!r} has no hyperparameter {unknown[0]!r} (it has: {', '.join(known) or 'none'})"
        )
    return cls(**hparams)


def list_methods() -> list[type[Method]]:
    return [cls for _, cls in METHODS.items()]


def parse_hparams(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "steps=10"]`` → typed values, each converted to the type of the field's default."""
    fields = {f.name: f for f in dataclasses.fields(get_method(name))}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ClipAdaptError(f"hyperparameter {pair!r} must look like KEY=VALUE")
        if key not in fields:
            raise ClipAdaptError(f"method {name!r} has no hyperparameter {key!r} (it has: {', '.join(fields)})")
        default = fields[key].default
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                out[key] = text.lower() in ("true", "1", "yes")
            elif default is None or isinstance(default, str):
                out[key] = text
            else:
                out[key] = type(default)(text)
        except ValueError:
            raise ClipAdaptError(f"hyperparameter {key}={text!r} is not a valid {type(default).__name__}") from None
    return out
