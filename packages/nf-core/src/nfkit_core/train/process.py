"""What the program that owns a training process sets up before it builds a :class:`~nfkit_core.train.Trainer`.

A Trainer changes nothing process-wide: it neither sets PyTorch's thread count nor seeds its global generators, nor
joins a process group. :func:`start_process` does those, once, for the entry point (``nf train``, or a script).
"""

from __future__ import annotations

import os

import torch

from nfkit_core.train.config import TrainConfig
from nfkit_core.train.distributed import Distributed, setup

__all__ = ["start_process", "cpu_threads"]


def cpu_threads(configured: int | None, processes_per_machine: int = 1) -> int:
    """The intra-op thread count of one training process on the CPU.

    ``configured`` (``train.cpu_threads``) when set; else ``OMP_NUM_THREADS`` when the environment sets it (how tests
    and CI pin it); else the cores PyTorch would use, shared evenly by the processes of this machine.

    Args:
        configured: ``train.cpu_threads``; ``None`` when unset.
        processes_per_machine: training processes on this machine (``LOCAL_WORLD_SIZE``).

    Returns:
        the thread count, at least 1.
    """
    if configured is not None:
        return configured
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return max(1, torch.get_num_threads() // processes_per_machine)


def start_process(config: TrainConfig) -> Distributed:
    """Join the process group of a ``torchrun`` run, pick the device, and set the CPU thread count.

    Args:
        config: the run's training options (``device`` and ``cpu_threads`` are read).

    Returns:
        this process's place in the run, for :class:`~nfkit_core.train.Trainer`'s ``dist``.

    Raises:
        ConfigError: ``config.device`` names CUDA, but no CUDA device is available.
    """
    process = setup(config.device)
    if process.device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.cpu_threads, process.local_world_size))
    return process
