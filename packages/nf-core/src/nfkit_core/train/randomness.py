"""Randomness of a training run that does not depend on how many processes share it.

Every optimizer step draws its noise (dequantization, augmentation, label dropout, the flow's stochastic layers)
from a generator seeded by ``(seed, step)``. Each draw is made for the whole *global* batch and every process keeps
its own rows, so one process with batch ``B`` and ``W`` processes with batch ``B / W`` each see the very same noise
for each example; and a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nfkit_core.noise import NoiseSource

__all__ = ["step_seed", "ShardedNoise"]


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for step ``step`` of a run seeded with ``seed`` (both mixed in by odd multipliers).

    Args:
        seed: the run's seed (``train.seed``).
        step: the optimizer step; evaluation batches use negative steps.

    Returns:
        a seed in ``[0, 2**63)`` for ``torch.Generator.manual_seed``.
    """
    return (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + 1) % (2**63)


class ShardedNoise(NoiseSource):
    """Draws for the global batch from a ``(seed, step)`` generator and keeps rows ``rank::world_size``.

    A :class:`~torch.utils.data.distributed.DistributedSampler` gives process ``r`` the examples at global batch
    positions ``r, r + W, r + 2W, ...``, so those are its rows of each draw. Every draw must have the local batch as
    its first dimension.

    Args:
        seed: the run's seed.
        step: the optimizer step.
        rank: this process's rank.
        world_size: number of processes.
        device: where to draw (the training device).
    """

    def __init__(self, seed: int, step: int, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu") -> None:
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator(device=device).manual_seed(step_seed(seed, step))

    def draw(self, kind: str, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        if len(shape) == 0:
            raise ValueError("ShardedNoise needs batched draws (the batch as first dimension), got a scalar shape")
        sampler = torch.randn if kind == "normal" else torch.rand
        full = sampler((shape[0] * self.world_size, *shape[1:]), generator=self.generator,
                       device=self.generator.device, dtype=dtype)
        return full[self.rank::self.world_size].to(device)
