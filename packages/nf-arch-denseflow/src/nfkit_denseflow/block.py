"""DenseFlow blocks: invertible units joined by cross-unit coupling (Grcić et al. 2021, section 3.2, figure 3).

A block of ``n`` units works on a growing representation. Before every unit but the first, ``growth_rate`` channels
of noise are appended (incremental augmentation)::

    e_i = mu_i + sigma_i * eps,   eps ~ N(0, I),   (mu_i, log sigma_i) = g_i(x_0, y_0, ..., y_{i-2})
    y_i = f_i([y_{i-1}, e_i])

where ``x_0`` is the block input and ``y_j`` the output of unit ``j``. Each appended noise contributes
``-log q(e_i | ...) = sum(log sigma_i) - log N(eps)`` to the bound (SurVAE Flows, eq. 5). The conditioning of
``g_i`` follows the official implementation: the block input and the outputs of all units *before* the one being
augmented.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core import Sequential, Transform
from nfkit_core.layers import ActNorm, AffineCoupling, Augment, ChannelSwap, InvertibleConv1x1
from nfkit_core.layers.conditioning import at_least_float32, zero_init
from nfkit_denseflow.coupling_net import DenseAttentionNet

__all__ = ["NoiseConditioner", "DenseFlowBlock", "glow_module"]


class NoiseConditioner(nn.Module):
    """``g_i`` of the cross-unit coupling: conv3x3 -> ReLU -> zero-initialised conv1x1 to ``(mu, log sigma)``.

    Called by :class:`nfkit_core.layers.Augment` with the concatenated ``history`` as its ``features`` (the
    representation ``y`` being augmented is not an input of ``g_i``). The log-scale is bounded as
    ``2 tanh(s / 2)``, in (at least) float32 also under autocast. Returns ``[mu, log sigma]`` (the ``"halves"``
    layout).

    Args:
        in_channels: the channels of the history.
        noise_channels: the channels of the appended noise (the growth rate).
        hidden_factor: the hidden width, as a multiple of ``in_channels``.
    """

    def __init__(self, in_channels: int, noise_channels: int, hidden_factor: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden_factor * in_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            zero_init(nn.Conv2d(hidden_factor * in_channels, 2 * noise_channels, kernel_size=1)))

    def forward(self, history: Tensor) -> Tensor:
        """``[mu, log sigma]`` of the appended noise, ``(B, 2 * noise_channels, H, W)``.

        Args:
            history: the block's input and the outputs of its earlier units, concatenated along the channels.
        """
        mean, raw_log_scale = at_least_float32(self.net(history)).chunk(2, dim=1)
        return torch.cat([mean, 2.0 * torch.tanh(raw_log_scale / 2.0)], dim=1)


def glow_module(channels: int, coupling_net: nn.Module, lu: bool = True) -> Sequential:
    """ActNorm -> invertible 1x1 convolution -> affine coupling (log-scale ``2 tanh(s/2)``) -> swap of halves.

    Args:
        channels: the number of channels of the module's input ``(B, C, H, W)``.
        coupling_net: the coupling's network, mapping ``C // 2`` channels to ``2 * (C - C // 2)``.
        lu: LU-decomposed 1x1 convolution.

    Returns:
        a :class:`nfkit_core.Sequential` of ``"actnorm"``, ``"conv"``, ``"coupling"`` and ``"swap"``.
    """
    return Sequential({
        "actnorm": ActNorm(channels),
        "conv": InvertibleConv1x1(channels, lu=lu),
        "coupling": AffineCoupling(coupling_net, mask="channel", log_scale="tanh", params="halves"),
        "swap": ChannelSwap(),
    })


class DenseFlowBlock(Transform):
    """``num_units`` units of ``modules_per_unit`` glow-like modules with cross-unit coupling between the units.

    The output has ``in_channels + (num_units - 1) * growth_rate`` channels.

    Args:
        in_channels: channels of the block input.
        num_units: units in the block.
        modules_per_unit: glow-like modules per unit.
        growth_rate: noise channels appended before each unit but the first.
        mid_channels: width of the coupling networks (see :class:`DenseAttentionNet`).
        dense_depth, dense_growth, num_landmarks, attention, checkpointing: options of the coupling networks.
        lu: LU-parametrised 1x1 convolutions (``False``: a plain weight matrix, as the official implementation).
    """

    is_bijective = False

    def __init__(self, in_channels: int, num_units: int, modules_per_unit: int, growth_rate: int, mid_channels: int,
                 dense_depth: int = 7, dense_growth: int = 64, num_landmarks: int = 4, attention: str = "paper",
                 checkpointing: bool = False, lu: bool = True) -> None:
        super().__init__()
        if num_units < 1 or modules_per_unit < 1:
            raise ValueError(f"a DenseFlow block needs at least one unit of one module, got {num_units} units of "
                             f"{modules_per_unit} modules")
        if num_units > 1 and growth_rate < 1:
            raise ValueError(f"a block of {num_units} units needs growth_rate >= 1, got {growth_rate}")
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.out_channels = in_channels + (num_units - 1) * growth_rate
        units, augment = [], []
        for i in range(num_units):
            channels = in_channels + i * growth_rate
            if channels < 2:
                raise ValueError(f"a DenseFlow unit needs at least 2 channels to couple, got {channels}")
            if i > 0:
                # g_i sees the block input and y_0, ..., y_{i-2}; y_j has in_channels + j * growth_rate channels.
                history = in_channels + sum(in_channels + j * growth_rate for j in range(i - 1))
                augment.append(Augment(growth_rate, NoiseConditioner(history, growth_rate)))
            modules = [glow_module(channels, DenseAttentionNet(
                channels // 2, 2 * (channels - channels // 2), mid_channels, dense_depth, dense_growth,
                num_landmarks, attention, checkpointing), lu=lu) for _ in range(modules_per_unit)]
            units.append(Sequential(*modules))
        self.units = nn.ModuleList(units)
        self.augment = nn.ModuleList(augment)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DenseFlowBlock expects input of shape (batch, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        y, total = self.units[0](x)
        history = [x]
        for augment, unit in zip(self.augment, self.units[1:]):
            augmented, log_det_noise = augment(y, features=torch.cat(history, dim=1))
            history.append(y)
            y, log_det = unit(augmented)
            total = total + log_det_noise + log_det
        return y, total

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        if z.dim() != 4 or z.shape[1] != self.out_channels:
            raise ValueError(f"DenseFlowBlock.inverse expects input of shape (batch, {self.out_channels}, H, W), "
                             f"got {tuple(z.shape)}")
        # Undo the units from the last, dropping the noise each one was given. The noise is scored afterwards, once
        # the representations its conditioner sees are known.
        unit_inputs = []
        total = z.new_zeros(z.shape[0])
        for unit in reversed(self.units[1:]):
            z, log_det = unit.inverse(z, **options)
            total = total + log_det
            unit_inputs.append(z)
            z = z[:, :-self.growth_rate]
        x, log_det = self.units[0].inverse(z, **options)
        total = total + log_det
        history = [x]
        for augment, augmented in zip(self.augment, reversed(unit_inputs)):
            _, log_q = augment.inverse(augmented, features=torch.cat(history, dim=1))
            total = total + log_q
            history.append(augmented[:, :-self.growth_rate])
        return x, total
