"""Shape helpers shared by the layers: per-channel broadcasting and counting positions."""

from __future__ import annotations

from torch import Tensor

__all__ = ["per_channel", "positions"]


def per_channel(values: Tensor, x: Tensor) -> Tensor:
    """View a ``(C,)`` tensor so that it broadcasts over ``x`` of shape ``(B, C, *spatial)``."""
    return values.view(1, -1, *([1] * (x.dim() - 2)))


def positions(x: Tensor) -> int:
    """The number of positions (pixels, time steps) per channel of ``x``: 1 for vectors ``(B, C)``."""
    return x[0, 0].numel()
