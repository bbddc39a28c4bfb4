"""Which examples each process trains on, batch by batch: seeded, different every epoch, resumable mid-epoch.

Epoch ``e`` visits the training set in the order ``torch.randperm(N)`` drawn from a generator seeded with
``seed + e`` — the order :class:`torch.utils.data.distributed.DistributedSampler` uses, so runs keep the data order
they had before this module existed. The order is cut after ``W * floor(N / W)`` positions and process ``r`` of ``W``
takes positions ``r, r + W, r + 2W, ...``; its batch ``b`` is the next ``B`` of those. So the global batch ``b`` of an
epoch is the same set of examples for any number of processes, each process reads only its own examples, and the
position in the data is just ``(epoch, batch)`` = ``divmod(step, steps_per_epoch)``: a resumed run recomputes the
order of its epoch and starts at its batch, with nothing else to save.

Memory: one epoch's order, 8 bytes per training example (10 MB for ImageNet's 1.28 M images), is the only thing that
grows with the dataset; batches are cut from it as they are needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["EpochSampler", "EpochBatches"]


class EpochBatches:
    """The batches of one process in one epoch from batch ``start`` on; a ``batch_sampler`` for a DataLoader.

    Args:
        indices: this process's example indices for the epoch, in order.
        batch_size: examples per batch.
        start: the first batch.
        stop: the batch to stop before.
    """

    def __init__(self, indices: Tensor, batch_size: int, start: int, stop: int) -> None:
        self.indices = indices
        self.batch_size = batch_size
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        size = self.batch_size
        for batch in range(self.start, self.stop):
            yield self.indices[batch * size:(batch + 1) * size].tolist()


class EpochSampler:
    """The data order of a training run.

    Args:
        num_examples: training examples ``N``.
        batch_size: examples per batch of this process (the global batch divided by the number of processes).
        seed: the run's seed.
        rank: this process's rank ``r``.
        world_size: number of processes ``W``.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of the {world_size} processes")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.per_process = num_examples // world_size
        self.steps_per_epoch = self.per_process // batch_size

    def order(self, epoch: int) -> Tensor:
        """The permutation of all ``N`` examples that epoch ``epoch`` follows.

        Args:
            epoch: the epoch, from 0.
        """
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_examples, generator=generator)

    def epoch(self, epoch: int, start: int = 0) -> EpochBatches:
        """This process's batches of epoch ``epoch``, from batch ``start`` on (a resumed run's position).

        Args:
            epoch: the epoch, from 0.
            start: the first batch of the epoch to yield.

        Raises:
            ValueError: ``start`` outside the epoch.
        """
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"batch {start} is outside an epoch of {self.steps_per_epoch} batches")
        mine = self.order(epoch)[:self.per_process * self.world_size][self.rank::self.world_size]
        return EpochBatches(mine, self.batch_size, start, self.steps_per_epoch)
