"""Single-process or DistributedDataParallel runs, as started by ``torchrun``.

``torchrun --nproc_per_node N`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` then joins the
process group (``nccl`` on GPUs, ``gloo`` on CPUs); that is for the entry point that owns the process to do
(:func:`nfkit_core.train.start_process`). :func:`current` describes the process without changing anything. Without
those variables the run is a single process and every collective below is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from nfkit_core.errors import ConfigError

__all__ = ["Distributed", "setup", "current", "resolve_device"]


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; a CUDA device of a distributed run is ``cuda:LOCAL_RANK``.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or an indexed device such as ``"cuda:1"`` (``train.device``).
        local_rank: this process's rank on its machine; picks the GPU when ``device`` names CUDA without an index.

    Returns:
        the device to train on.

    Raises:
        ConfigError: ``device`` names CUDA, but no CUDA device is available.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device is cuda, but no CUDA device is available")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
    return resolved


@dataclass
class Distributed:
    """Where this process stands in the run.

    Attributes:
        rank: this process's rank (0 in a single-process run).
        world_size: number of processes.
        device: the device this process trains on.
        local_world_size: number of processes on this machine (``LOCAL_WORLD_SIZE``); they share its CPU cores.
    """

    rank: int
    world_size: int
    device: torch.device
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether there is a process group (more than one process)."""
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all processes (in place; returned for convenience).

        Args:
            tensor: a tensor of the same shape and dtype on every process, on this process's device.

        Returns:
            ``tensor``, now holding the sum.
        """
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather(self, obj: Any) -> list[Any]:
        """One picklable object from every process, in rank order.

        Args:
            obj: this process's object; it must be picklable.

        Returns:
            a list of ``world_size`` objects, the one of rank ``r`` at index ``r`` (``[obj]`` in a single process).
        """
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (if this run created one)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _from_environment(device: str) -> Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Distributed(rank=int(os.environ.get("RANK", "0")), world_size=world_size,
                       device=resolve_device(device, local_rank),
                       local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))))


def setup(device: str = "auto") -> Distributed:
    """Join the process group when started by ``torchrun`` and pick this process's device.

    Args:
        device: ``train.device`` (see :func:`resolve_device`).

    Returns:
        this process's place in the run.

    Raises:
        ConfigError: ``device`` names CUDA, but no CUDA device is available.
    """
    process = _from_environment(device)
    if process.enabled and not dist.is_initialized():
        if process.device.type == "cuda":
            torch.cuda.set_device(process.device)
        dist.init_process_group(backend="nccl" if process.device.type == "cuda" else "gloo",
                                device_id=process.device if process.device.type == "cuda" else None)
    return process


def current(device: str = "auto") -> Distributed:
    """This process's place in the run, without joining anything.

    Args:
        device: ``train.device`` (see :func:`resolve_device`).

    Returns:
        the rank, world size and device read from ``torchrun``'s environment variables.

    Raises:
        ConfigError: the process was started by ``torchrun`` but has not joined the process group (call
            :func:`setup`, or :func:`nfkit_core.train.start_process`, first).
    """
    process = _from_environment(device)
    if process.enabled and not dist.is_initialized():
        raise ConfigError("this process is one of a torchrun run but has not joined the process group: call "
                           "nfkit_core.train.start_process(run.train) before building the Trainer (nf train does)")
    return process
