"""Squeeze: trade spatial resolution for channels (Real NVP section 3.6, Glow section 3)."""

from __future__ import annotations

from typing import Any

from einops import rearrange
from torch import Tensor

from nfkit_core.transform import Transform

__all__ = ["Squeeze", "Unsqueeze"]


class Squeeze(Transform):
    """``(B, C, H, W) -> (B, C * f * f, H / f, W / f)``: each ``f x f`` block of pixels becomes ``f * f`` channels.

    A permutation of the entries, so the log-det is 0. The ``f * f`` new channels of one input channel are adjacent,
    ordered by row then column within the block: channel ``c * f * f + i * f + j`` holds pixel ``(i, j)`` of the
    block, as survae's ``Squeeze2d`` and openai/glow's ``squeeze2d``.

    Args:
        factor: the block size ``f``; ``H`` and ``W`` must be divisible by it.

    Raises:
        ValueError: ``factor < 1``.
    """

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"squeeze factor must be >= 1, got {factor}")
        self.factor = int(factor)

    def _squeeze(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(f"{type(self).__name__}({self.factor}) needs images (B, C, H, W) with H and W divisible "
                             f"by {self.factor}, got shape {tuple(x.shape)}")
        return rearrange(x, "b c (h fh) (w fw) -> b (c fh fw) h w", fh=self.factor, fw=self.factor)

    def _unsqueeze(self, z: Tensor) -> Tensor:
        if z.dim() != 4 or z.shape[1] % (self.factor ** 2):
            raise ValueError(f"{type(self).__name__}({self.factor}) needs images (B, C, H, W) with C divisible by "
                             f"{self.factor ** 2}, got shape {tuple(z.shape)}")
        return rearrange(z, "b (c fh fw) h w -> b c (h fh) (w fw)", fh=self.factor, fw=self.factor)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        return self._unsqueeze(z), z.new_zeros(z.shape[0])


class Unsqueeze(Squeeze):
    """The inverse of :class:`Squeeze`: ``(B, C * f * f, H, W) -> (B, C, H * f, W * f)``.

    Args:
        factor: the block size ``f``; ``C`` must be divisible by ``f * f``.
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._unsqueeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        return self._squeeze(z), z.new_zeros(z.shape[0])
