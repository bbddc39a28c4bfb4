"""The prior of volume-preserving TarFlow: a zero-mean Gaussian with a learned variance per token dimension."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nfkit_core import GaussianPrior

__all__ = ["LearnedVarianceNormal"]


class LearnedVarianceNormal(GaussianPrior):
    """``N(0, diag(exp(log_scale))^2)`` over ``event_shape`` with a learned ``log_scale`` (initially ``N(0, I)``).

    A volume-preserving flow cannot rescale its latents, so the prior learns their spread instead. The official code
    tracks ``var = E[z^2]`` with a moving average outside the gradient; here the maximum-likelihood gradient learns
    ``log_scale``, whose optimum is the same ``exp(2 log_scale) = E[z^2]``.

    Args:
        event_shape: the shape of one latent, e.g. ``(T, D)`` tokens.
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__(event_shape)
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def mean_and_log_scale(self, context: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        return self._zero, self.log_scale
