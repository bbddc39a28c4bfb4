"""Held-out likelihood of a flow: negative log-likelihood in nats and bits per dimension over a dataset split.

For each example, with ``D`` dimensions and bins of width ``Δ`` (dequantized images; ``Δ = 1`` for continuous data):

    nats = -(log p(y) + D log Δ)          bits/dim = nats / (D ln 2)

where ``log p(y)`` is the flow's (single-sample, or importance-weighted over ``K`` noise draws) bound. Every batch
draws its noise from a fixed generator, so an evaluation repeats exactly, and examples are dealt out to the processes
of a distributed run in the same interleaved order as training batches, so the result does not depend on the process
count. A NaN or infinite log-likelihood is an error that names the split and the number of examples, never a number
passed on to a report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from nfkit_core import noise
from nfkit_core.data import Preprocessing
from nfkit_core.errors import NfError
from nfkit_core.flow import forward_draws_noise, importance_weighted_log_prob
from nfkit_core.train.distributed import Distributed
from nfkit_core.train.randomness import ShardedNoise

__all__ = ["Evaluation", "Evaluator", "NonFiniteEvaluationError"]


class NonFiniteEvaluationError(NfError, ValueError):
    """The flow's log-likelihood of some held-out examples is NaN or infinite."""


@dataclass(frozen=True)
class Evaluation:
    """The mean held-out likelihood over a split.

    Attributes:
        split: the split's name.
        nats: mean negative log-likelihood per example, in nats (with the bin-width term of discrete data).
        bits_per_dim: the same in bits per dimension.
        examples: how many examples were evaluated.
    """

    split: str
    nats: float
    bits_per_dim: float
    examples: int


class Evaluator:
    """Evaluates flows on dataset splits, the same way at every call.

    Args:
        preprocessing: how batches are prepared (evaluation mode: no flips, no label dropout).
        num_dims: ``D``, the data's dimension.
        conditional: whether the flow is conditioned on the labels.
        dist: this process's place in the run.
        seed: the run's seed (evaluation batch ``b`` draws its noise as step ``-(b + 1)`` would).
        batch_size: examples per process and batch.
        num_workers: DataLoader worker processes.
        importance_batch_size: noise draws per forward pass of the importance-weighted bound.
    """

    def __init__(self, preprocessing: Preprocessing, num_dims: int, conditional: bool, dist: Distributed, seed: int,
                 batch_size: int, num_workers: int = 0, importance_batch_size: int = 4) -> None:
        self.preprocessing = preprocessing
        self.num_dims = num_dims
        self.conditional = conditional
        self.dist = dist
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.importance_batch_size = importance_batch_size

    def _generator(self) -> torch.Generator:
        """For the DataLoader's worker seeds, which it would otherwise draw from the global generator."""
        return torch.Generator().manual_seed(self.seed)

    def context(self, labels: Tensor) -> Tensor | None:
        """What the flow is conditioned on: the labels of a class-conditional run, else nothing.

        Args:
            labels: class labels of the batch, shape ``(B,)``.

        Returns:
            ``labels`` when the run is class-conditional, else ``None``.
        """
        return labels if self.conditional else None

    @torch.no_grad()
    def __call__(self, flow: nn.Module, dataset: Dataset, split: str, max_examples: int | None = None,
                 num_samples: int = 1) -> Evaluation:
        """Evaluate ``flow`` (in eval mode, fp32) on the first ``max_examples`` examples of ``dataset`` (all by
        default), with the importance-weighted bound over ``num_samples`` noise draws when that is above 1.

        Raises:
            NonFiniteEvaluationError: the log-likelihood of some examples is not finite.
        """
        flow.eval()
        device = self.dist.device
        count = len(dataset) if max_examples is None else min(len(dataset), max_examples)
        mine = list(range(self.dist.rank, count, self.dist.world_size))
        loader = DataLoader(dataset, batch_size=self.batch_size, sampler=mine, num_workers=self.num_workers,
                            generator=self._generator())
        log_bin_width = self.preprocessing.log_bin_width
        # The sum of nats over finite examples, the number of examples, and the number of non-finite ones.
        totals = torch.zeros(3, dtype=torch.float64, device=device)
        for batch, (x, labels) in enumerate(loader):
            source = ShardedNoise(self.seed, -(batch + 1), self.dist.rank, self.dist.world_size, device)
            with noise.use(source):
                x, labels = self.preprocessing(x.to(device), labels.to(device), train=False)
                if num_samples > 1:
                    log_prob = importance_weighted_log_prob(flow, x, self.context(labels), num_samples,
                                                            self.importance_batch_size)
                else:
                    log_prob = flow.log_prob(x, self.context(labels))
            nats = -(log_prob.double() + self.num_dims * log_bin_width)
            finite = torch.isfinite(nats)
            totals += torch.stack([nats[finite].sum(), torch.tensor(float(len(x)), device=device),
                                   (~finite).sum().double()])
        total, examples, non_finite = self.dist.all_reduce_sum(totals).tolist()
        if non_finite:
            raise NonFiniteEvaluationError(
                f"the flow's log-likelihood is NaN or infinite for {int(non_finite)} of {int(examples)} examples of "
                f"the {split!r} split; the model is numerically broken on them (outliers far from the training "
                f"data, or weights that diverged)")
        if examples == 0:
            raise NfError(f"the {split!r} split has no examples to evaluate")
        mean = total / examples
        return Evaluation(split, mean, mean / (self.num_dims * math.log(2)), int(examples))

    @torch.no_grad()
    def likelihood_draws_noise(self, flow: nn.Module, dataset: Dataset) -> bool:
        """Whether ``flow``'s likelihood is stochastic (then an importance-weighted bound is worth reporting).

        Args:
            flow: the flow, put in eval mode.
            dataset: a split; ``flow.log_prob`` runs once on its first two examples while its noise draws are recorded.

        Returns:
            ``True`` when that pass drew any noise (a dequantizer, noise augmentation).
        """
        x, labels = next(iter(DataLoader(dataset, batch_size=2, generator=self._generator())))
        x, labels = self.preprocessing(x.to(self.dist.device), labels.to(self.dist.device), train=False)
        return forward_draws_noise(flow.eval(), x, self.context(labels))
