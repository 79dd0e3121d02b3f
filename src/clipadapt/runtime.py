"""Device choice, mixed precision and seeding."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from clipadapt.errors import ClipAdaptError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda[:i]``/``mps`` into a device, failing clearly when it is absent."""
    spec = str(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ClipAdaptError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ClipAdaptError("CUDA was requested but this machine has no usable CUDA device; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ClipAdaptError(f"CUDA device {device.index} requested but only {torch.cuda.device_count()} exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ClipAdaptError("MPS was requested but is not available on this machine; use --device cpu")
    return device


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Mixed-precision context: bf16/fp16 autocast on GPU under ``auto``, full precision on CPU."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    if precision == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    else:
        raise ClipAdaptError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
