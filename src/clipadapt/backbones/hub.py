"""Weights from the Hugging Face hub (or a URL) without network: know at once, instead of retrying for a minute.

open_clip and transformers fetch weights through ``huggingface_hub``, which retries an unreachable hub
five times per file with growing pauses (about 50 s and 46 log lines for one open_clip tag) before it
gives up or falls back to its cache. clipadapt asks first: are the weights in the cache, and can the hub
be reached (one TCP connection, a few seconds at most)? Cached weights then load in the hub's offline
mode, straight from the cache; weights that are neither cached nor reachable are one error line that
says so and how to give a checkpoint instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from functools import cache
from urllib.parse import urlparse

from clipadapt.errors import ClipAdaptError

HUB_URL = "https://huggingface.co"
PROBE_SECONDS = 3.0
NOISY_LOGGERS = ("huggingface_hub", "transformers", "open_clip", "")  # "" is the root logger open_clip logs to


def offline_requested() -> bool:
    """The user's own switch: ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))  # fmt: skip


@cache
def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (once per process)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_url() -> str:
    return os.environ.get("HF_ENDPOINT", HUB_URL)


def can_download(url: str) -> bool:
    """Not switched offline, and ``url``'s host answers."""
    return not offline_requested() and reachable(url)


def hf_cached(repo: str, filenames: tuple[str, ...], cache_dir: str | None = None) -> bool:
    """Whether any of ``filenames`` of the hub repository ``repo`` is in the hub cache."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    try:
        return any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir), str) for f in filenames)
    except HFValidationError:  # not a hub repository name: nothing of it can be cached
        return False


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Let ``huggingface_hub`` (and transformers through it) serve files from the cache without asking the
    network, as ``HF_HUB_OFFLINE=1`` does (the library reads that flag from this module attribute)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def quiet_loaders() -> Iterator[None]:
    """Silence the loading libraries' own log lines (retries, 'failed to download'): a failure becomes one
    clipadapt error line instead."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def not_available(what: str, hint: str) -> ClipAdaptError:
    why = "HF_HUB_OFFLINE is set" if offline_requested() else "the network cannot be reached"
    return ClipAdaptError(f"the weights of {what} are not in the local cache and {why}; {hint}")
