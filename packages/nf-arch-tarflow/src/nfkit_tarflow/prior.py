"""The prior of volume-preserving TarFlow: a zero-mean Gaussian with a learned variance per token dimension."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nfkit_core import noise, sum_except_batch
from nfkit_core.priors import normal_log_prob

__all__ = ["LearnedVarianceNormal"]


class LearnedVarianceNormal(nn.Module):
    """``N(0, diag(exp(log_scale))^2)`` over ``event_shape`` with a learned ``log_scale`` (initially ``N(0, I)``).

    A volume-preserving flow cannot rescale its latents, so the prior learns their spread instead. The official code
    tracks ``var = E[z^2]`` with a moving average outside the gradient; here the maximum-likelihood gradient learns
    ``log_scale``, whose optimum is the same ``exp(2 log_scale) = E[z^2]``.
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = tuple(int(d) for d in event_shape)
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(z)`` summed over the event, shape ``(batch,)``."""
        if tuple(z.shape[1:]) != self.event_shape:
            raise ValueError(f"prior expects latents of shape (batch, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(z.shape)}")
        return sum_except_batch(normal_log_prob(z, 0.0, self.log_scale))

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` latents, the standard-normal draw scaled by the sampling temperature."""
        eps = noise.randn((n, *self.event_shape), device=self.log_scale.device)
        return torch.exp(self.log_scale) * eps * noise.temperature()
