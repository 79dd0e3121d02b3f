"""Device choice, the precision policy, and seeding.

The precision policy (``--precision``) decides two things on one device:

- ``autocast``: the dtype the *encoders* run in (feature extraction, ReCLIP's and FAIR's tuning, predict):
  ``bf16`` (``fp16`` where bf16 is unsupported) on CUDA under ``auto``, off (float32) on the CPU and MPS
  under ``auto``; ``bf16``/``fp16`` force it, ``fp32`` switches it off;
- ``tf32``: whether float32 matrix products and convolutions may use TensorFloat-32 on CUDA (10-bit
  mantissa, several times faster on Ampere and later): on under ``auto``, ``bf16`` and ``fp16``, off under
  ``fp32``. It never applies elsewhere.

Every method computes on float32 features; ``fp32`` makes a run on a GPU compute what it computes on the
CPU (up to the order of floating-point sums). The policy is recorded in each result JSON and classifier card
(:meth:`Precision.record`), and ``predict`` applies the card's.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from clipadapt.distributed import rank_device
from clipadapt.errors import ClipAdaptError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda[:i]``/``mps`` into a device, failing clearly when it is absent (under
    torchrun, ``cuda`` is each process's own GPU, ``cuda:LOCAL_RANK``)."""
    spec = str(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return rank_device(torch.device("cuda"))
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
    return rank_device(device)


@dataclass(frozen=True)
class Precision:
    """The precision policy ``requested`` (auto, fp32, bf16, fp16) as it applies on one device."""

    requested: str
    autocast: str  # "bf16", "fp16" or "off": the encoders' autocast dtype
    tf32: bool  # TensorFloat-32 for float32 matrix products and convolutions (CUDA only)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.autocast)

    def record(self) -> dict[str, object]:
        """What result JSONs and classifier cards keep of the policy."""
        return {"precision": self.requested, "autocast": self.autocast, "tf32": self.tf32}


def precision_policy(device: torch.device, precision: str = "auto") -> Precision:
    """The policy ``precision`` means on ``device`` (module docstring)."""
    if precision not in PRECISIONS:
        raise ClipAdaptError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    if precision == "auto":
        autocast_dtype = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "off"
    else:
        autocast_dtype = "off" if precision == "fp32" else precision
    return Precision(precision, autocast_dtype, tf32=cuda and precision != "fp32")


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The encoders' mixed-precision context under ``precision`` on ``device`` (no-op when autocast is off)."""
    dtype = precision_policy(device, precision).autocast_dtype
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def gradient_scaler(device: torch.device, precision: str = "auto") -> torch.amp.GradScaler:
    """A gradient scaler for training under :func:`autocast`: active under fp16 autocast (where small
    gradients, such as LayerNorms', underflow), a pass-through otherwise (bf16 and fp32 need none)."""
    enabled = precision_policy(device, precision).autocast == "fp16"
    return torch.amp.GradScaler(device.type, enabled=enabled)


def optimiser_step(loss: torch.Tensor, optimiser: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """One step on ``loss``: zero the gradients, backward through ``scaler``, step (skipped by the scaler
    when a gradient overflowed), update the scale."""
    optimiser.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    scaler.update()


@contextlib.contextmanager
def float32_matmuls(device: torch.device, precision: str = "auto") -> Iterator[Precision]:
    """Within the block, CUDA float32 matrix products and convolutions use TF32 as the policy says; the
    previous settings are restored afterwards. Yields the policy."""
    policy = precision_policy(device, precision)
    if device.type != "cuda":
        yield policy
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # torch ≥ 2.9: the legacy flags must not be mixed with these
        before = (matmul.fp32_precision, cudnn.fp32_precision)
        matmul.fp32_precision = cudnn.fp32_precision = "tf32" if policy.tf32 else "ieee"
        try:
            yield policy
        finally:
            matmul.fp32_precision, cudnn.fp32_precision = before
    else:
        before_legacy = (matmul.allow_tf32, cudnn.allow_tf32)
        matmul.allow_tf32 = cudnn.allow_tf32 = policy.tf32
        try:
            yield policy
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = before_legacy


def wide_float(device: torch.device) -> torch.dtype:
    """float64 where the device has it (not on MPS, which has no float64; float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def hash_seed(*parts: int) -> int:
    """A stable 63-bit seed mixed from non-negative integers."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def seeded_randomness(seed: int) -> Iterator[None]:
    """Within the block, Python's, NumPy's and torch's CPU generators start from ``seed``; afterwards they
    are as before. (A random transform run under it draws the same whatever process or order runs it.)
    The accelerators' generators are left alone: ``torch.manual_seed`` would reseed them too, and
    ``fork_rng(devices=[])`` would not restore them."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.random.default_generator.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
