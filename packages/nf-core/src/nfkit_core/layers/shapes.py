"""Shape helpers shared by the layers: channel checks and per-channel broadcasting."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_channels", "per_channel", "positions"]


def check_channels(layer: str, x: Tensor, num_channels: int) -> None:
    """Raise a ValueError unless ``x`` is ``(B, num_channels, *spatial)``."""
    if x.dim() < 2 or x.shape[1] != num_channels:
        raise ValueError(f"{layer} expects input of shape (batch, {num_channels}, ...), got {tuple(x.shape)}")


def per_channel(values: Tensor, x: Tensor) -> Tensor:
    """View a ``(C,)`` tensor so that it broadcasts over ``x`` of shape ``(B, C, *spatial)``."""
    return values.view(1, -1, *([1] * (x.dim() - 2)))


def positions(x: Tensor) -> int:
    """The number of positions (pixels, time steps) per channel of ``x``: 1 for vectors ``(B, C)``."""
    return x[0, 0].numel()
