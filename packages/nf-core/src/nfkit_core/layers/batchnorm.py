"""Batch normalization as a bijection (Dinh et al. 2017 "Real NVP" section 3.7; Papamakarios et al. 2017 "MAF")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core.layers.shapes import per_channel, positions
from nfkit_core.transform import Transform
from nfkit_core.validation import check_channels

__all__ = ["BatchNorm"]


class BatchNorm(Transform):
    """``z = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta`` per channel.

    In training mode ``mean`` and ``var`` are the statistics of the batch (gradients flow through them, as in MAF) and
    the running averages are updated: ``running = (1 - momentum) * running + momentum * batch``. In eval mode the
    running averages are used, so the map is a fixed bijection. :meth:`inverse` always uses the running averages: it
    inverts the eval-mode forward. The variance is the biased batch variance (MAF's ``mean(x^2) - mean(x)^2``).

    Works on vectors ``(B, C)`` and on ``(B, C, *spatial)`` (statistics over batch and positions).

    Args:
        num_features: the number of channels ``C``.
        momentum: the weight of the batch statistics in the running averages.
        eps: added to the variance before the square root.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.log_gamma = nn.Parameter(torch.zeros(self.num_features))
        self.beta = nn.Parameter(torch.zeros(self.num_features))
        self.register_buffer("running_mean", torch.zeros(self.num_features))
        self.register_buffer("running_var", torch.ones(self.num_features))

    @staticmethod
    def _statistics(x: Tensor) -> tuple[Tensor, Tensor]:
        dims = [d for d in range(x.dim()) if d != 1]
        return x.mean(dim=dims), x.var(dim=dims, unbiased=False)

    @torch.no_grad()
    def set_statistics(self, x: Tensor) -> None:
        """Set the running averages to the statistics of ``x`` (MAF evaluates with those of the whole training set).

        Args:
            x: inputs of this layer, ``(N, C)`` or ``(N, C, *spatial)``.
        """
        check_channels("BatchNorm", x, self.num_features)
        mean, var = self._statistics(x)
        self.running_mean.copy_(mean)
        self.running_var.copy_(var)

    def _log_det(self, var: Tensor, x: Tensor) -> Tensor:
        return ((self.log_gamma - 0.5 * torch.log(var + self.eps)).sum() * positions(x)).repeat(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_channels("BatchNorm", x, self.num_features)
        if self.training:
            mean, var = self._statistics(x)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - per_channel(mean, x)) / per_channel(torch.sqrt(var + self.eps), x)
        z = x_hat * per_channel(self.log_gamma.exp(), x) + per_channel(self.beta, x)
        return z, self._log_det(var, x)

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        check_channels("BatchNorm", z, self.num_features)
        x_hat = (z - per_channel(self.beta, z)) * per_channel(torch.exp(-self.log_gamma), z)
        x = x_hat * per_channel(torch.sqrt(self.running_var + self.eps), z) + per_channel(self.running_mean, z)
        return x, -self._log_det(self.running_var, z)
