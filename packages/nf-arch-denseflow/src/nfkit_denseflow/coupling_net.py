"""The network of DenseFlow's intra-unit affine coupling (Grcić et al. 2021, section 3.3, figure 2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfkit_core.layers.conditioning import zero_init
from nfkit_denseflow.attention import NystromAttention
from nfkit_denseflow.nets import DenseBlock

__all__ = ["DenseAttentionNet"]


class DenseAttentionNet(nn.Module):
    """A 1x1 projection, then a dense block and Nyström self-attention side by side, fused by BatchNorm-ReLU-Conv.

    ``h = project(x)``; ``output(fuse([attention(h), dense(h)]))``. The output convolution starts at zero so that the
    coupling it parametrises starts as the identity.

    Args:
        in_channels: channels of the conditioning half.
        out_channels: ``2 *`` channels of the transformed half (log-scale and shift).
        mid_channels: width after the projection (48 in DenseFlow-74-10).
        depth: dense layers in the dense block (7 in the paper).
        growth: feature maps added by each dense layer (64 in the paper).
        num_landmarks: landmarks of the Nyström attention (4 in the paper).
        attention: ``"paper"`` or ``"official"`` (see :mod:`nfkit_denseflow.attention`).
        checkpointing: recompute the dense block in the backward pass to save memory.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, depth: int = 7, growth: int = 64,
                 num_landmarks: int = 4, attention: str = "paper", checkpointing: bool = False) -> None:
        super().__init__()
        if mid_channels < 2:
            raise ValueError(f"mid_channels must be at least 2 (attention works at half of it), got {mid_channels}")
        self.project = nn.Conv2d(in_channels, mid_channels, kernel_size=1)
        self.dense = DenseBlock(mid_channels, mid_channels, depth, growth, checkpointing=checkpointing)
        self.attention = NystromAttention(mid_channels, mid_channels // 2, num_landmarks, mode=attention)
        self.fuse = nn.Sequential(nn.BatchNorm2d(2 * mid_channels), nn.ReLU(),
                                  nn.Conv2d(2 * mid_channels, mid_channels, kernel_size=1, bias=False))
        self.output = zero_init(nn.Conv2d(mid_channels, out_channels, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        """The coupling's raw parameters.

        Args:
            x: the conditioning half of shape ``(B, in_channels, H, W)``.

        Returns:
            log-scales and shifts of the transformed half, shape ``(B, out_channels, H, W)``.
        """
        h = self.project(x)
        h = self.fuse(torch.cat([self.attention(h), self.dense(h)], dim=1))
        return self.output(h)
