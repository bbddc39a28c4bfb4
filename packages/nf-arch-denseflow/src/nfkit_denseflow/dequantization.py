"""DenseFlow's variational dequantizer (Ho et al. 2019, "Flow++", section 3.1; as in the official implementation).

``q(u | x)`` is a conditional flow from Gaussian noise at half resolution: a learned per-channel Gaussian base, then
``steps`` pairs of (invertible 1x1 convolution, affine coupling conditioned on features of ``x``), a last 1x1
convolution, an unsqueeze to the data shape, and the sigmoid applied by
:class:`nfkit_core.layers.VariationalDequantization`.
The features of ``x`` come from a small context network: levels scaled to [-1, 1], a dense block, a stride-2
convolution and another dense block. They reach the couplings as their internal input ``features`` (handed on by the
encoder's :class:`~nfkit_core.Sequential`), never through ``context``: each coupling network sees its conditioning
half joined with the features along the channels, as the official ``ConditionalCoupling`` network does.
"""

from __future__ import annotations

from torch import Tensor, nn

from nfkit_core import Sequential
from nfkit_core.layers import (
    AffineCoupling,
    ElementwiseAffine,
    InvertibleConv1x1,
    UniformDequantization,
    Unsqueeze,
    VariationalDequantization,
)
from nfkit_denseflow.nets import DenseBlock, ResidualDenseNet

__all__ = ["LevelsToSigned", "dequantization_context_net", "dequantization_encoder", "make_dequantizer",
           "DEQUANTIZATIONS"]

DEQUANTIZATIONS = ("variational", "uniform")

# The output range of the dequantizer: levels x in [0, K) become (x + u) / K - 1/2 in (-1/2, 1/2).
LOW, HIGH = -0.5, 0.5


class LevelsToSigned(nn.Module):
    """Scale integer levels ``x`` in ``[0, num_bins)`` to ``2 x / (num_bins - 1) - 1`` in [-1, 1]."""

    def __init__(self, num_bins: int) -> None:
        super().__init__()
        self.num_bins = num_bins

    def forward(self, x: Tensor) -> Tensor:
        return 2 * x / (self.num_bins - 1) - 1


def dequantization_context_net(in_channels: int, num_bins: int, mid_channels: int = 64,
                               context_channels: int = 64, depth: int = 4, growth: int = 16) -> nn.Sequential:
    """The features of ``x`` that condition ``q(u | x)``, at half resolution."""
    return nn.Sequential(
        LevelsToSigned(num_bins),
        DenseBlock(in_channels, mid_channels, depth, growth),
        nn.Conv2d(mid_channels, mid_channels, kernel_size=2, stride=2),
        DenseBlock(mid_channels, context_channels, depth, growth))


def dequantization_encoder(in_channels: int, steps: int = 4, context_channels: int = 64, mid_channels: int = 64,
                           depth: int = 4, growth: int = 64, lu: bool = True) -> Sequential:
    """The conditional flow from noise of shape ``(4 C, H/2, W/2)`` to pre-sigmoid values of shape ``(C, H, W)``,
    called as ``encoder(eps, features=c)`` with ``context_channels`` channels of features ``c`` at half resolution."""
    channels = 4 * in_channels
    layers = {"base": ElementwiseAffine((channels, 1, 1))}
    for i in range(steps):
        layers[f"conv{i}"] = InvertibleConv1x1(channels, lu=lu)
        net = ResidualDenseNet(channels // 2 + context_channels, 2 * (channels - channels // 2), mid_channels,
                                 depth, growth)
        layers[f"coupling{i}"] = AffineCoupling(net, mask="channel", log_scale="tanh", params="halves")
    layers[f"conv{steps}"] = InvertibleConv1x1(channels, lu=lu)
    layers["unsqueeze"] = Unsqueeze()
    return Sequential(layers)


def make_dequantizer(kind: str, data_shape: tuple[int, int, int], num_bins: int, steps: int = 4,
                     context_channels: int = 64, mid_channels: int = 64, depth: int = 4, growth: int = 64,
                     lu: bool = True, context_depth: int = 4,
                     context_growth: int = 16) -> UniformDequantization | VariationalDequantization:
    """The dequantizer of a DenseFlow: ``"variational"`` (the paper's) or ``"uniform"``, both onto (-1/2, 1/2).

    ``depth`` and ``growth`` size the dense blocks of the encoder's coupling networks, ``context_depth`` and
    ``context_growth`` those of the context network (the official sizes are 4, 64 and 4, 16).
    """
    if kind == "uniform":
        return UniformDequantization(num_bins, LOW, HIGH)
    if kind != "variational":
        raise ValueError(f"dequantization must be one of {DEQUANTIZATIONS}, got {kind!r}")
    channels, height, width = data_shape
    if height % 2 or width % 2:
        raise ValueError(f"variational dequantization works at half resolution and needs even H and W, "
                         f"got data of shape {data_shape}")
    encoder = dequantization_encoder(channels, steps, context_channels, mid_channels, depth, growth, lu)
    context_net = dequantization_context_net(channels, num_bins, mid_channels, context_channels, context_depth,
                                             context_growth)
    return VariationalDequantization(encoder, num_bins, LOW, HIGH, context_net=context_net,
                                     noise_shape=(4 * channels, height // 2, width // 2))
