"""Extraction on several processes with torch.distributed (``torchrun``): one device per process.

``torchrun --nproc_per_node N -m clipadapt extract ...`` (or ``eval``/``adapt``) starts N processes; each
knows its rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). The feature
store gives every rank its share of the missing cache chunks, each rank encodes them on its own device and
writes them into the shared cache, and after a barrier every rank reads the complete entry; only rank 0
then writes outputs and runs methods. The result is the chunk files a one-process run writes, so the
features are identical. Across nodes the cache must be on a shared file system (see the README's SLURM
example). The process group uses NCCL between CUDA processes and gloo otherwise; it carries barriers only.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the command line starts without it
    import torch


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """This process's place among the processes torchrun started (a single process: rank 0 of 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, a CUDA device without an index becomes this process's own, ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and ranks().world > 1:
        import torch

        return torch.device("cuda", ranks().local)
    return device


def start(device: torch.device) -> None:
    """Join the process group (once; nothing to do in a single process)."""
    if ranks().world == 1 or _joined():
        return
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))  # a rank may wait for a slow chunk


def barrier() -> None:
    """Wait until every rank gets here (nothing to do in a single process)."""
    if not _joined():
        return
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def finish() -> None:
    """Leave the process group, if this process joined one."""
    if _joined():
        import torch.distributed as dist

        dist.destroy_process_group()


def _joined() -> bool:
    dist = sys.modules.get("torch.distributed")  # never imported: never joined
    return dist is not None and dist.is_available() and dist.is_initialized()
