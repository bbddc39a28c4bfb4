"""Activation normalization (Kingma & Dhariwal 2018, "Glow", section 3.1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core.layers.shapes import per_channel, positions
from nfkit_core.transform import Transform
from nfkit_core.validation import check_channels

__all__ = ["ActNorm"]


class ActNorm(Transform):
    """Per-channel affine map ``z = (x + shift) * exp(log_scale)`` with data-dependent initialisation.

    The first forward pass in training mode sets ``shift`` and ``log_scale`` so that the output of that batch has zero
    mean and unit variance per channel; afterwards they are ordinary parameters. The ``initialized`` buffer is part of
    the state dict, so a loaded model is not initialised again.

    Works on vectors ``(B, C)`` and on ``(B, C, *spatial)``; the log-determinant is
    ``sum(log_scale) * positions`` (Glow, table 1).

    Args:
        num_features: the number of channels ``C``.
        eps: added to the standard deviation at initialisation.
    """

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.shift = nn.Parameter(torch.zeros(self.num_features))
        self.log_scale = nn.Parameter(torch.zeros(self.num_features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set the parameters so that ``x`` is mapped to zero mean and unit variance per channel.

        Args:
            x: a batch of inputs, ``(B, C)`` or ``(B, C, *spatial)``.
        """
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False)
        self.shift.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def _log_det(self, x: Tensor) -> Tensor:
        return (self.log_scale.sum() * positions(x)).repeat(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_channels("ActNorm", x, self.num_features)
        if self.training and not self.initialized:
            self.initialize(x)
        z = (x + per_channel(self.shift, x)) * per_channel(self.log_scale.exp(), x)
        return z, self._log_det(x)

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        check_channels("ActNorm", z, self.num_features)
        x = z * per_channel(torch.exp(-self.log_scale), z) - per_channel(self.shift, z)
        return x, -self._log_det(z)
