"""Noise augmentation (Huang et al. 2020 "Augmented Normalizing Flows"; Chen et al. 2020 "VFlow").

Extra channels ``e ~ q(e | x)`` are appended to the input, so that the flow works in a larger space. Its forward
log-det is ``-log q(e | x)`` (SurVAE Flows, eq. 5: a stochastic inverse of a slice).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core import noise
from nfkit_core.layers.conditioning import PARAM_LAYOUTS, check_choice, gaussian_params
from nfkit_core.priors import normal_log_prob
from nfkit_core.transform import Transform, sum_except_batch

__all__ = ["Augment"]


class Augment(Transform):
    """Append ``noise_channels`` channels ``e = mean + exp(log_scale) * eps``, ``eps`` from
    :func:`nfkit_core.noise.randn`.

    ``q(e | h) = N(mean, exp(log_scale)^2)`` with ``(mean, log_scale)`` from ``conditioner(h)`` (and the context, see
    :mod:`nfkit_core.layers.conditioning`), or ``N(0, I)`` without a conditioner. ``h`` is the input ``x`` itself, or
    the ``features`` a caller passes as a keyword (an architecture's own internal inputs, e.g. DenseFlow's history of
    earlier units; they are not ``context``). The inverse drops the extra channels and returns ``+log q(e | h)`` as
    its log-det.

    Args:
        noise_channels: the number of channels to append; they have the spatial shape of the input.
        conditioner: network mapping ``x`` to ``2 * noise_channels`` channels of mean and log-scale, or ``None``.
        params: layout of the conditioner output: ``"halves"`` (mean first) or ``"interleaved"``.
    """

    is_bijective = False
    internal_inputs = ("features",)

    def __init__(self, noise_channels: int, conditioner: nn.Module | None = None, params: str = "halves") -> None:
        super().__init__()
        if noise_channels < 1:
            raise ValueError(f"noise_channels must be at least 1, got {noise_channels}")
        self.noise_channels = int(noise_channels)
        self.conditioner = conditioner
        self.params = check_choice("params", params, PARAM_LAYOUTS)

    def _mean_and_log_scale(self, x: Tensor, context: Tensor | None,
                            features: Tensor | None) -> tuple[Tensor, Tensor]:
        shape = (x.shape[0], self.noise_channels, *x.shape[2:])
        h = x if features is None else features
        return gaussian_params(self.conditioner, h, context, shape, self.params, "Augment's conditioner")

    def forward(self, x: Tensor, context: Tensor | None = None, *,
                features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, log_scale = self._mean_and_log_scale(x, context, features)
        e = mean + torch.exp(log_scale) * noise.randn(mean.shape, device=x.device, dtype=x.dtype)
        log_q = sum_except_batch(normal_log_prob(e, mean, log_scale))
        return torch.cat([x, e], dim=1), -log_q

    def inverse(self, z: Tensor, context: Tensor | None = None, *, features: Tensor | None = None,
                **options: Any) -> tuple[Tensor, Tensor]:
        if z.dim() < 2 or z.shape[1] <= self.noise_channels:
            raise ValueError(f"Augment.inverse expects more than {self.noise_channels} channels, got shape "
                             f"{tuple(z.shape)}")
        x, e = z[:, :-self.noise_channels], z[:, -self.noise_channels:]
        mean, log_scale = self._mean_and_log_scale(x, context, features)
        return x, sum_except_batch(normal_log_prob(e, mean, log_scale))
