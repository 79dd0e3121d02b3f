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


def route_hparams(methods: list[str], pairs: list[str]) -> dict[str, dict[str, Any]]:
    """Give each method the ``KEY=VALUE`` overrides it has a field for, typed like the field's default.

    A key that none of ``methods`` has is an error (a typo must not be silently ignored).
    """
    fields = {m: {f.name: f for f in dataclasses.fields(get_method(m))} for m in methods}
    routed: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ClipAdaptError(f"hyperparameter {pair!r} must look like KEY=VALUE")
        owners = [m for m in methods if key in fields[m]]
        if not owners:
            raise ClipAdaptError(f"no selected method has a hyperparameter {key!r}")
        for m in owners:
            routed[m][key] = _typed(key, text, fields[m][key].default)
    return routed


def _typed(key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if default is None or isinstance(default, str):
            return text
        return type(default)(text)
    except ValueError:
        raise ClipAdaptError(f"hyperparameter {key}={text!r} is not a valid {type(default).__name__}") from None
