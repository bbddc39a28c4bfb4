"""An affine coupling layer written from scratch against nfkit-core's contract (Dinh et al. 2017, eq. 4-6)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core import Transform


class HalfAffineCoupling(Transform):
    """Keep the first half of the features, scale and shift the second half by functions of the first.

    ``forward``: ``z_2 = x_2 * exp(s(x_1)) + t(x_1)``, ``z_1 = x_1``; ``log |det dz/dx| = sum(s(x_1))``.

    Args:
        features: the event size ``D`` of inputs of shape ``(batch, D)``, at least 2.
        hidden: units of the conditioner's hidden layers.
    """

    def __init__(self, features: int, hidden: int = 64) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"a coupling needs at least 2 features, got {features}")
        self.kept = features // 2
        changed = features - self.kept
        self.net = nn.Sequential(nn.Linear(self.kept, hidden), nn.ReLU(), nn.Linear(hidden, 2 * changed))
        # Start as the identity (s = t = 0) so that a deep stack trains stably from the first step.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self.net(kept).chunk(2, dim=1)
        return torch.tanh(log_scale), shift  # tanh bounds the log-scale: no overflow early in training

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept, changed = x[:, :self.kept], x[:, self.kept:]
        log_scale, shift = self._scale_shift(kept)
        z = torch.cat([kept, changed * log_scale.exp() + shift], dim=1)
        return z, log_scale.sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        kept, changed = z[:, :self.kept], z[:, self.kept:]
        log_scale, shift = self._scale_shift(kept)
        x = torch.cat([kept, (changed - shift) * (-log_scale).exp()], dim=1)
        return x, -log_scale.sum(dim=1)
