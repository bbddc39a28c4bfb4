"""Cutting images into a sequence of patch tokens, as a (volume-preserving) bijection."""

from __future__ import annotations

from typing import Any

from einops import rearrange
from torch import Tensor

from nfkit_core import Transform
from nfkit_core.validation import check_event_shape

__all__ = ["Patchify"]


class Patchify(Transform):
    """``(B, C, H, W) -> (B, T, C P^2)``: non-overlapping ``P x P`` patches in raster order.

    Each token lists its values channel first, then patch row, then patch column: the order of
    ``torch.nn.functional.unfold`` used by the official TarFlow. A permutation of the values, so ``log_det = 0``.

    Args:
        patch_size: side ``P`` of a patch.
        image_shape: ``(C, H, W)``; ``H`` and ``W`` must be multiples of ``P``.
    """

    def __init__(self, patch_size: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        channels, height, width = image_shape
        if height % patch_size or width % patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch_size}")
        self.patch_size = patch_size
        self.image_shape = (channels, height, width)
        self.num_tokens = (height // patch_size) * (width // patch_size)
        self.token_dim = channels * patch_size**2

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_event_shape("Patchify", x, self.image_shape, "images")
        p = self.patch_size
        tokens = rearrange(x, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p)
        return tokens, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        check_event_shape("Patchify.inverse", z, (self.num_tokens, self.token_dim), "tokens")
        p = self.patch_size
        image = rearrange(z, "b (h w) (c p q) -> b c (h p) (w q)", p=p, q=p, h=self.image_shape[1] // p)
        return image, z.new_zeros(z.shape[0])
