"""Adaptation methods, registered by name. Importing this package registers every built-in method."""

from clipadapt.methods import (  # noqa: F401  (registers)
    auto,
    clip_enhance,
    cmm,
    fair,
    inmap,
    linear_probe,
    reclip,
    reclip_lp,
    stata,
    tip_adapter,
    transclip,
    zeroshot,
)
from clipadapt.methods.base import Classifier, Fit, Method, Setting
from clipadapt.methods.registry import build_method, get_method, list_methods, register_method, route_hparams

__all__ = [
    "Classifier",
    "Fit",
    "Method",
    "Setting",
    "build_method",
    "get_method",
    "list_methods",
    "register_method",
    "route_hparams",
]
