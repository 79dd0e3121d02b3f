"""Methods registered by name."""

from __future__ import annotations

import dataclasses
from typing import Any

from clipadapt.errors import ClipAdaptError
from clipadapt.methods.base import Method
from clipadapt.methods.hparams import hparam_types, parsed
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


def route_hparams(methods: list[str], pairs: list[str]) -> dict[str, dict[str, Any]]:
    """Give each method the ``KEY=VALUE`` overrides it has a field for, read as the field's annotated type
    (:mod:`clipadapt.methods.hparams`).

    A key that none of ``methods`` has is an error (a typo must not be silently ignored).
    """
    types = {m: hparam_types(get_method(m)) for m in methods}
    routed: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ClipAdaptError(f"hyperparameter {pair!r} must look like KEY=VALUE")
        owners = [m for m in methods if key in types[m]]
        if not owners:
            raise ClipAdaptError(f"no selected method has a hyperparameter {key!r}")
        for m in owners:
            routed[m][key] = parsed(m, key, text, types[m][key])
    return routed
