"""Element-wise bijections: a learned affine map, and the logit / sigmoid pair used to (un)bound data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit_core.transform import Transform, sum_except_batch
from nfkit_core.validation import validating

__all__ = ["ElementwiseAffine", "Logit", "Sigmoid"]


class ElementwiseAffine(Transform):
    """``z = x * exp(log_scale) + shift`` with parameters of ``shape``, broadcast over the event (initially identity).

    ``shape`` is the event shape for one scale per element (e.g. ``(C, H, W)``), or a broadcastable shape such as
    ``(C, 1, 1)`` for one scale per channel of an image (survae's ``ConvNormal2d`` base is this map applied to
    standard-normal noise).

    Args:
        shape: the shape of ``log_scale`` and ``shift`` (an int for vectors of that size).
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)
        self.shift = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def _log_det(self, x: Tensor) -> Tensor:
        if x.dim() - 1 != self.log_scale.dim():
            raise ValueError(f"ElementwiseAffine with parameters of shape {tuple(self.log_scale.shape)} expects "
                             f"input (batch, ...) with {self.log_scale.dim()} event dimensions, got {tuple(x.shape)}")
        return self.log_scale.expand(x.shape[1:]).sum().repeat(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_det = self._log_det(x)
        return x * self.log_scale.exp() + self.shift, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        log_det = self._log_det(z)
        return (z - self.shift) * torch.exp(-self.log_scale), -log_det


def _log_sigmoid_derivative(x: Tensor) -> Tensor:
    """``log sigmoid'(x) = log sigmoid(x) + log sigmoid(-x)``, element-wise."""
    return F.logsigmoid(x) + F.logsigmoid(-x)


class Sigmoid(Transform):
    """``z = sigmoid(x)``: maps the real line to (0, 1)."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(x), sum_except_batch(_log_sigmoid_derivative(x))

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        x = torch.log(z) - torch.log1p(-z)
        return x, -sum_except_batch(_log_sigmoid_derivative(x))


class Logit(Transform):
    """``z = logit(alpha + (1 - 2 alpha) x)`` for data ``x`` in [0, 1] (Real NVP section 4.1; MAF).

    ``alpha`` keeps the logit away from the infinities at 0 and 1; Real NVP uses 0.05. The inverse is
    ``x = (sigmoid(z) - alpha) / (1 - 2 alpha)``. Input outside [0, 1] raises a ValueError (a data-dependent check,
    see :mod:`nfkit_core.validation`).

    Args:
        alpha: in ``[0, 0.5)``; squeezes the data into ``[alpha, 1 - alpha]`` before the logit.

    Raises:
        ValueError: ``alpha`` outside ``[0, 0.5)``.
    """

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"Logit's alpha must lie in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if validating() and ((x < 0).any() or (x > 1).any()):
            raise ValueError(f"Logit expects data in [0, 1], got values in [{x.min().item()}, {x.max().item()}]")
        s = self.alpha + (1 - 2 * self.alpha) * x
        z = torch.log(s) - torch.log1p(-s)
        log_det = sum_except_batch(math.log(1 - 2 * self.alpha) - _log_sigmoid_derivative(z))
        return z, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        x = (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        log_det = sum_except_batch(_log_sigmoid_derivative(z) - math.log(1 - 2 * self.alpha))
        return x, log_det
