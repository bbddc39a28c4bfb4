"""Real NVP (Dinh et al. 2017): affine couplings with checkerboard and channel masks, multi-scale for images."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nfkit_core import NormalizingFlow, Sequential, StandardNormal
from nfkit_core.layers import ActNorm, AffineCoupling, Split, Squeeze
from nfkit_core.specs import DataInfo


@dataclass
class RealNVPConfig:
    """Options of Real NVP.

    Attributes:
        scales: number of scales for images (each: checkerboard couplings, squeeze, channel couplings, split).
        couplings: coupling layers per stage (per scale for images; in total for vectors).
        hidden: channels (images) or units (vectors) of the conditioner networks.
    """

    scales: int = 2
    couplings: int = 3
    hidden: int = 64


def zero_initialised(layer: nn.Module) -> nn.Module:
    """Start a conditioner's last layer at zero, so that every coupling starts as the identity.

    Args:
        layer: a layer with ``weight`` and ``bias``.

    Returns:
        the same layer.
    """
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def conv_net(in_channels: int, out_channels: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                         zero_initialised(nn.Conv2d(hidden, out_channels, 3, padding=1)))


def mlp(in_features: int, out_features: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         zero_initialised(nn.Linear(hidden, out_features)))


def image_scale(channels: int, config: RealNVPConfig, last: bool) -> tuple[Sequential, int]:
    """One scale of the image model and the number of channels it passes on.

    Args:
        channels: the number of channels of the scale's input.
        config: the Real NVP options.
        last: the last scale (checkerboard couplings only, no squeeze and no split).

    Returns:
        the scale as a :class:`nfkit_core.Sequential`, and the channels it passes on to the next scale.
    """
    steps: dict[str, nn.Module] = {}
    for i in range(config.couplings):
        steps[f"checkerboard{i}"] = AffineCoupling(conv_net(channels, 2 * channels, config.hidden),
                                                   mask="checkerboard", log_scale="tanh", reverse_mask=i % 2 == 1)
        steps[f"actnorm{i}"] = ActNorm(channels)
    if last:
        return Sequential(steps), channels
    steps["squeeze"] = Squeeze(2)
    channels *= 4
    for i in range(config.couplings):
        half = channels // 2
        steps[f"channel{i}"] = AffineCoupling(conv_net(half, 2 * (channels - half), config.hidden),
                                              mask="channel", log_scale="tanh", reverse_mask=i % 2 == 1)
    steps["split"] = Split(channels // 2)
    return Sequential(steps), channels // 2


def build_realnvp(config: RealNVPConfig, data: DataInfo) -> NormalizingFlow:
    """Real NVP for ``data``: multi-scale for ``(C, H, W)`` images, a coupling stack for vectors.

    Args:
        config: the Real NVP options.
        data: what the flow models: its ``shape``, ``num_classes``.

    Returns:
        the flow.

    Raises:
        ValueError: image sides not divisible by ``2 ** (scales - 1)``.
    """
    if len(data.shape) == 3:
        channels, height, width = data.shape
        if height % 2 ** (config.scales - 1) or width % 2 ** (config.scales - 1):
            raise ValueError(f"{config.scales} scales need image sides divisible by {2 ** (config.scales - 1)}, "
                             f"got {data.shape}")
        scales = {}
        for s in range(config.scales):
            scales[f"scale{s}"], channels = image_scale(channels, config, last=s == config.scales - 1)
        side = 2 ** (config.scales - 1)
        latent_shape = (channels, height // side, width // side)
        flow = NormalizingFlow(Sequential(scales), StandardNormal(latent_shape), data_shape=data.shape)
        # Knowledge distillation (nfkit-distill) matches the latent each scale passes on.
        flow.matchable_intermediates = [[f"scale{s}.split"] for s in range(config.scales - 1)] + [
            [f"scale{config.scales - 1}"]]
        return flow
    if len(data.shape) != 1 or data.shape[0] < 2:
        raise ValueError(f"realnvp models (C, H, W) images or vectors of 2 or more features, got shape {data.shape}")
    features = data.shape[0]
    half = features // 2
    steps = {}
    for i in range(2 * config.couplings):
        # Alternate which end is kept; the kept part always has features // 2 entries.
        steps[f"coupling{i}"] = AffineCoupling(mlp(half, 2 * (features - half), config.hidden), mask="channel",
                                               log_scale="tanh", reverse_mask=i % 2 == 1)
        steps[f"actnorm{i}"] = ActNorm(features)
    flow = NormalizingFlow(Sequential(steps), StandardNormal((features,)), data_shape=data.shape)
    flow.matchable_intermediates = [[f"actnorm{i}" for i in range(2 * config.couplings)]]
    return flow

