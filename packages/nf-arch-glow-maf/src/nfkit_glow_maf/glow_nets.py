"""The convolutional networks inside Glow: the coupling conditioner ``NN()``, the zero-initialised convolution and the
learned top prior built on it.

Both follow openai/glow (``model.py: f``, ``tfops.py: conv2d, conv2d_zeros``):

* convolutions pad with zeros and, with ``edge_bias``, also see where the padding is (openai/glow's
  ``add_edge_padding`` appends a channel that is 1 on the padded border); since that channel does not depend on the
  input, it contributes a learned bias map ``conv(border, w_edge)`` that we add to the ordinary convolution;
* hidden convolutions have no bias and are followed by an ActNorm;
* the last convolution starts at zero and scales its output by ``exp(3 * logs)`` with a learned per-channel ``logs``,
  so that every coupling starts as the identity and every split prior as N(0, I).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit_core import GaussianPrior
from nfkit_core.layers import ActNorm
from nfkit_core.layers.conditioning import zero_init

__all__ = ["GlowConv2d", "ZeroConv2d", "GlowConditioner", "LearnedTopPrior"]


class GlowConv2d(nn.Conv2d):
    """A stride-1 'same' convolution, optionally with openai/glow's edge bias.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: an odd kernel size.
        bias: add a learned per-channel bias.
        edge_bias: add the learned response to the zero-padding indicator (see the module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True,
                 edge_bias: bool = True) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"GlowConv2d needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.edge_weight = (nn.Parameter(torch.zeros(out_channels, 1, kernel_size, kernel_size))
                            if edge_bias and kernel_size > 1 else None)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        if self.edge_weight is None:
            return out
        pad = self.kernel_size[0] // 2
        border = F.pad(x.new_zeros(1, 1, *x.shape[2:]), (pad, pad, pad, pad), value=1.0)
        return out + F.conv2d(border, self.edge_weight)


class ZeroConv2d(GlowConv2d):
    """openai/glow's ``conv2d_zeros``: a 3x3 convolution initialised to zero whose output is scaled by ``exp(3 logs)``.

    Accepts and ignores a context, so that it can serve directly as a split prior network.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        edge_bias: add openai/glow's edge bias (see :class:`GlowConv2d`).
    """

    logscale_factor = 3.0

    def __init__(self, in_channels: int, out_channels: int, edge_bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 3, bias=True, edge_bias=edge_bias)
        self.logs = nn.Parameter(torch.zeros(out_channels))
        zero_init(self)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The scaled convolution of ``x``.

        Args:
            x: the input, ``(B, in_channels, H, W)``.
            context: ignored.
        """
        return super().forward(x) * torch.exp(self.logscale_factor * self.logs).view(1, -1, 1, 1)


class GlowConditioner(nn.Module):
    """Glow's coupling network: conv3x3 -> ActNorm -> ReLU -> conv1x1 -> ActNorm -> ReLU -> ZeroConv2d.

    Hidden convolutions are drawn from ``N(0, 0.05^2)`` (openai/glow's default initializer). The context is accepted
    and ignored: in Glow only the top prior sees the class label.

    Args:
        in_channels: channels of the conditioning half.
        out_channels: parameters it returns (twice the transformed channels for an affine coupling).
        hidden_channels: the width of the hidden layers (512 in the paper).
        edge_bias: use openai/glow's edge bias in the 3x3 convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, edge_bias: bool = True) -> None:
        super().__init__()
        self.conv1 = GlowConv2d(in_channels, hidden_channels, 3, bias=False, edge_bias=edge_bias)
        self.norm1 = ActNorm(hidden_channels)
        self.conv2 = GlowConv2d(hidden_channels, hidden_channels, 1, bias=False, edge_bias=False)
        self.norm2 = ActNorm(hidden_channels)
        self.out = ZeroConv2d(hidden_channels, out_channels, edge_bias=edge_bias)
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0.0, 0.05)
            if conv.edge_weight is not None:
                nn.init.normal_(conv.edge_weight, 0.0, 0.05)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The coupling parameters for the kept half ``x``.

        Args:
            x: the kept half, ``(B, in_channels, H, W)``.
            context: ignored (only Glow's top prior sees the class label).
        """
        # in place: ActNorm's backward does not need its output, so it need not be kept beside the ReLU's
        h = F.relu(self.norm1(self.conv1(x))[0], inplace=True)
        h = F.relu(self.norm2(self.conv2(h))[0], inplace=True)
        return self.out(h)


class LearnedTopPrior(GaussianPrior):
    """openai/glow's ``--learntop`` prior: ``N(mean, exp(logs)^2)`` with ``[mean, logs] = conv2d_zeros(0)``.

    openai/glow (``model.py: prior``) computes the top prior's mean and log-scale by a :class:`ZeroConv2d` from
    ``2 C`` to ``2 C`` channels of an all-zero input, the first ``C`` outputs being the mean. Only the convolution's
    bias and edge-bias weights reach its output, so each channel has one mean and scale in the interior and learned
    offsets near the border; the zero input's weights are kept so that the model has openai/glow's parameters.

    Args:
        event_shape: ``(C, H, W)`` of the top latent.
        edge_bias: give the convolution openai/glow's edge bias (without it the prior is one Gaussian per channel).
    """

    def __init__(self, event_shape: tuple[int, int, int], edge_bias: bool = True) -> None:
        super().__init__(event_shape)
        channels = self.event_shape[0]
        self.net = ZeroConv2d(2 * channels, 2 * channels, edge_bias=edge_bias)

    def mean_and_log_scale(self, context: Tensor | None = None, n: int = 1) -> tuple[Tensor, Tensor]:
        """``(mean, log_scale)``, each of shape ``(1, C, H, W)`` (scoring and sampling are the core's).

        Args:
            context: ignored (the learned top prior is unconditional).
            n: ignored: the parameters broadcast over the batch.
        """
        channels, height, width = self.event_shape
        h = self.net(self.net.weight.new_zeros(1, 2 * channels, height, width))
        return h[:, :channels], h[:, channels:]
