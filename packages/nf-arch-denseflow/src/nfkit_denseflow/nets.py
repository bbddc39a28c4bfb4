"""Convolutional building blocks of DenseFlow's networks: gated convolutions and densely connected blocks.

Every network that parametrises a DenseFlow layer (the intra-unit couplings, the dequantizer's couplings and its
context encoder) is made of these blocks (Grcić et al. 2021, section 3.3 and appendix; Huang et al. 2017, "Densely
connected convolutional networks").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nfkit_core.layers.conditioning import zero_init

__all__ = ["GatedConv2d", "DenseLayer", "DenseBlock", "ResidualDenseNet"]


class GatedConv2d(nn.Module):
    """A 1x1 convolution with a gated output: ``a + b * sigmoid(c)`` for three groups ``(a, b, c)`` of channels.

    Args:
        in_channels: input channels.
        out_channels: output channels (the convolution makes three times as many).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 3 * out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """The gated output, ``(B, out_channels, H, W)``.

        Args:
            x: the input, ``(B, in_channels, H, W)``.
        """
        a, b, c = self.conv(x).chunk(3, dim=1)
        return a + b * torch.sigmoid(c)


class DenseLayer(nn.Module):
    """``[x, relu(conv3x3(relu(conv1x1(x))))]``: appends ``growth`` new feature maps to its input.

    Args:
        in_channels: input channels.
        growth: the number of feature maps it appends.
    """

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.bottleneck = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.conv = nn.Conv2d(in_channels, growth, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` with ``growth`` new maps appended, ``(B, C + growth, H, W)``.

        Args:
            x: the input, ``(B, C, H, W)``.
        """
        new = F.relu(self.conv(F.relu(self.bottleneck(x))))
        return torch.cat([x, new], dim=1)


class DenseBlock(nn.Module):
    """``depth`` dense layers followed by a gated 1x1 convolution to ``out_channels``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        depth: number of dense layers; the gated convolution sees ``in_channels + depth * growth`` channels.
        growth: feature maps added by each dense layer.
        checkpointing: recompute the block's activations in the backward pass instead of storing them (saves the
            memory of the concatenated features, which dominate DenseFlow's training memory, at the cost of one more
            forward pass of the block). The block holds no batch statistics, so recomputation is exact.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int, growth: int,
                 checkpointing: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth, growth) for i in range(depth))
        self.output = GatedConv2d(in_channels + depth * growth, out_channels)
        self.checkpointing = checkpointing

    def _run(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.output(x)

    def forward(self, x: Tensor) -> Tensor:
        """The block's output, ``(B, out_channels, H, W)``.

        Args:
            x: the input, ``(B, in_channels, H, W)``.
        """
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._run, x, use_reentrant=False)
        return self._run(x)


class ResidualDenseNet(nn.Module):
    """``output(h + dense(h))`` with ``h = project(x)``: the coupling network of the variational dequantizer.

    ``output`` is initialised to zero, so the coupling it parametrises starts as the identity.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        mid_channels: the width of ``h``.
        depth: dense layers in the dense block.
        growth: feature maps added by each dense layer.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, depth: int, growth: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(in_channels, mid_channels, kernel_size=1)
        self.dense = DenseBlock(mid_channels, mid_channels, depth, growth)
        self.output = zero_init(nn.Conv2d(mid_channels, out_channels, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        """The network's output, ``(B, out_channels, H, W)``.

        Args:
            x: the input, ``(B, in_channels, H, W)``.
        """
        h = self.project(x)
        return self.output(h + self.dense(h))
