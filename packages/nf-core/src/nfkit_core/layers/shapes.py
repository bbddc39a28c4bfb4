"""Shape helpers shared by the layers: per-channel broadcasting and counting positions."""

from __future__ import annotations

from torch import Tensor

__all__ = ["per_channel", "positions"]


def per_channel(values: Tensor, x: Tensor) -> Tensor:
    """View a ``(C,)`` tensor so that it broadcasts over ``x`` of shape ``(B, C, *spatial)``.

    Args:
        values: one value per channel, shape ``(C,)``.
        x: the tensor to broadcast over.

    Returns:
        ``values`` viewed as ``(1, C, 1, ..., 1)``.
    """
    return values.view(1, -1, *([1] * (x.dim() - 2)))


def positions(x: Tensor) -> int:
    """The number of positions (pixels, time steps) per channel of ``x``: 1 for vectors ``(B, C)``.

    Args:
        x: a batch ``(B, C, *spatial)``.
    """
    return x[0, 0].numel()
