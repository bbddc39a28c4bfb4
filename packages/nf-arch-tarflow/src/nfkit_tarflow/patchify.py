"""Cutting images into a sequence of patch tokens, as a (volume-preserving) bijection."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor

from nfkit_core import Transform

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
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"Patchify expects images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(x.shape)}")
        p = self.patch_size
        tokens = rearrange(x, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p)
        return tokens, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if tuple(z.shape[1:]) != (self.num_tokens, self.token_dim):
            raise ValueError(f"Patchify.inverse expects tokens of shape (batch, {self.num_tokens}, {self.token_dim}), "
                             f"got {tuple(z.shape)}")
        p = self.patch_size
        image = rearrange(z, "b (h w) (c p q) -> b c (h p) (w q)", p=p, q=p, h=self.image_shape[1] // p)
        return image, z.new_zeros(z.shape[0])
