"""An exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Keeps ``average <- d * average + (1 - d) * weights`` in a copy of the model.

    The decay warms up as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``:
    ``d = min(decay, (1 + n) / (10 + n))`` at the ``n``-th update, so that a short run is not dominated by the
    initial weights (with a fixed ``d = 0.999``, 37% of the average would still be the initialisation after 1000
    updates). Buffers (e.g. ActNorm's ``initialized`` flag, batch-norm statistics) are copied, not averaged.

    Args:
        model: the model being trained.
        decay: the largest decay, e.g. 0.999.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, num_updates: int) -> float:
        """The decay used at update number ``num_updates`` (counted from 0).

        Args:
            num_updates: the number of updates made before this one.
        """
        return min(self.decay, (1 + num_updates) / (10 + num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        """Move the average towards the current weights of ``model`` (the ``num_updates``-th update).

        Args:
            model: the model being trained (same architecture as the average).
            num_updates: the number of updates made before this one.

        Raises:
            ValueError: a model with other parameters.
        """
        weight = 1 - self.decay_at(num_updates)
        averages, currents = list(self.model.parameters()), list(model.parameters())
        if len(averages) != len(currents):
            raise ValueError(f"EMA of a model with {len(averages)} parameters updated from one with {len(currents)}")
        torch._foreach_lerp_(averages, currents, weight)
        for average, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(buffer)

    def state_dict(self) -> dict:
        """The averaged model's state dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the averaged weights.

        Args:
            state: a ``state_dict`` of the averaged model.
        """
        self.model.load_state_dict(state)
