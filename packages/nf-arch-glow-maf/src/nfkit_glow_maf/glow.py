"""Glow (Kingma & Dhariwal 2018): a multi-scale flow of ActNorm, invertible 1x1 convolutions and affine couplings.

The normalizing direction of a Glow with ``L`` levels of ``K`` steps, as openai/glow ``model.py`` (``codec``)::

    x -> [squeeze -> K x (ActNorm -> 1x1 conv -> coupling) -> split] x (L - 1)
      -> squeeze -> K x (ActNorm -> 1x1 conv -> coupling) -> z_top ~ prior

Each split keeps half of the channels and scores the other half under a Gaussian whose mean and log-scale a
zero-initialised convolution computes from the kept half (``split2d_prior``). The affine coupling is
``z_b = (x_b + shift) * sigmoid(h + 2)`` with ``(shift, h)`` interleaved in the conditioner output (``revnet2d_step``).

The transform is an :class:`nfkit_core.Sequential` of levels ``"level0"``, ``"level1"``, ...; each level is a
``Sequential`` of ``"squeeze"``, ``"steps"`` (``"step0"``, ``"step1"``, ..., each ``"actnorm"``, ``"permutation"``,
``"coupling"``) and ``"split"``. So ``flow.intermediates(x)`` returns the latent each level passes on, and
``flow.intermediates(x, names=["level0.steps", ...])`` the full latent of a level before its split.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfkit_core import ClassConditionalGaussian, NormalizingFlow, Sequential, StandardNormal, Transform
from nfkit_core.layers import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    InvertibleConv1x1,
    RandomPermutation,
    Reverse,
    Split,
    Squeeze,
)
from nfkit_core.specs import DataInfo
from nfkit_glow_maf.glow_nets import GlowConditioner, LearnedTopPrior, ZeroConv2d

__all__ = ["GlowConfig", "PRESETS", "build_glow", "glow_step"]

COUPLINGS = ("affine", "additive")
PERMUTATIONS = ("conv1x1", "reverse", "shuffle")


@dataclass
class GlowConfig:
    """Options of a Glow (defaults: openai/glow's CIFAR-10 model, its README's command).

    Attributes:
        num_levels: ``L``, the number of levels (each starts with a squeeze, all but the last end with a split).
        steps_per_level: ``K``, flow steps per level.
        hidden_channels: width of the coupling networks.
        coupling: ``"affine"`` (scale ``sigmoid(h + 2)``) or ``"additive"``.
        permutation: ``"conv1x1"`` (invertible 1x1 convolution), ``"reverse"`` or ``"shuffle"`` (Glow, section 5.1).
        lu: parametrise the 1x1 convolutions by their LU decomposition (Glow, eq. 10; as many parameters, a cheaper
            log-determinant); openai/glow's code uses the plain matrix.
        edge_bias: let the 3x3 convolutions see where the zero padding is (openai/glow's ``edge_bias``).
        learn_top: learn the mean and scale of the top prior as openai/glow's ``--learntop`` does (see
            :class:`nfkit_glow_maf.glow_nets.LearnedTopPrior`); else N(0, I). Class labels need no option: with
            ``data.num_classes > 0`` the top prior is class-conditional (openai/glow's ``--ycond``).
    """

    num_levels: int = 3
    steps_per_level: int = 32
    hidden_channels: int = 512
    coupling: str = "affine"
    permutation: str = "conv1x1"
    lu: bool = False
    edge_bias: bool = True
    learn_top: bool = True

    def __post_init__(self) -> None:
        if self.num_levels < 1 or self.steps_per_level < 1 or self.hidden_channels < 1:
            raise ValueError(f"num_levels, steps_per_level and hidden_channels must be positive, got "
                             f"{self.num_levels}, {self.steps_per_level}, {self.hidden_channels}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {self.permutation!r}")


# Table 4 of the paper (levels, steps per level, width), with openai/glow's settings (GlowConfig's defaults: affine
# coupling, plain 1x1 convolutions, edge bias, learned top). "cifar10" is the command of openai/glow's README
# (--n_level 3 --depth 32 --flow_permutation 2 --flow_coupling 1 --learntop): 44,603,604 parameters on 3x32x32, as
# many as openai/glow's model.py creates. Likewise on 3-channel images of their size: imagenet32 66,861,588,
# imagenet64 and lsun64 112,377,540, celeba-hq-256 230,971,044 (the model.py variables for the same layout).
# "digits" and "digits-tiny" are small CPU settings for 8x8 images.
PRESETS: dict[str, dict] = {
    "cifar10": dict(num_levels=3, steps_per_level=32, hidden_channels=512),
    "imagenet32": dict(num_levels=3, steps_per_level=48, hidden_channels=512),
    "imagenet64": dict(num_levels=4, steps_per_level=48, hidden_channels=512),
    "lsun64": dict(num_levels=4, steps_per_level=48, hidden_channels=512),
    "celeba-hq-256": dict(num_levels=6, steps_per_level=32, hidden_channels=512),
    "digits": dict(num_levels=2, steps_per_level=8, hidden_channels=64),
    "digits-tiny": dict(num_levels=2, steps_per_level=4, hidden_channels=32),
}

#: Where each preset comes from (the API reference and the architectures guide list them).
PRESET_SOURCES: dict[str, str] = {
    "cifar10": "Kingma & Dhariwal 2018, Table 4; the CIFAR-10 command of openai/glow's README",
    "imagenet32": "Kingma & Dhariwal 2018, Table 4 (ImageNet 32x32), with openai/glow's settings",
    "imagenet64": "Kingma & Dhariwal 2018, Table 4 (ImageNet 64x64), with openai/glow's settings",
    "lsun64": "Kingma & Dhariwal 2018, Table 4 (LSUN 64x64), with openai/glow's settings",
    "celeba-hq-256": "Kingma & Dhariwal 2018, Table 4 (CelebA-HQ 256x256), with openai/glow's settings",
    "digits": "nf: a CPU-sized model of the 8x8 digits",
    "digits-tiny": "nf: the smallest digits model, for tests and smoke runs",
}


def glow_step(channels: int, config: GlowConfig, index: int = 0) -> Sequential:
    """One flow step on ``channels`` channels: ActNorm -> permutation -> coupling (openai/glow ``revnet2d_step``).

    Args:
        channels: the number of channels ``C`` of the step's input ``(B, C, H, W)``.
        config: the Glow options (permutation, coupling, width, LU, edge bias).
        index: the step's index; it seeds the ``"shuffle"`` permutation.

    Returns:
        a :class:`nfkit_core.Sequential` of the steps ``"actnorm"``, ``"permutation"`` and ``"coupling"``.
    """
    if config.permutation == "conv1x1":
        permutation: Transform = InvertibleConv1x1(channels, lu=config.lu)
    elif config.permutation == "reverse":
        permutation = Reverse()
    else:
        permutation = RandomPermutation(channels, seed=index)
    kept, transformed = channels // 2, channels - channels // 2
    if config.coupling == "affine":
        conditioner = GlowConditioner(kept, 2 * transformed, config.hidden_channels, config.edge_bias)
        coupling: Transform = AffineCoupling(conditioner, mask="channel", log_scale="sigmoid", params="interleaved",
                                             shift_first=True)
    else:
        conditioner = GlowConditioner(kept, transformed, config.hidden_channels, config.edge_bias)
        coupling = AdditiveCoupling(conditioner, mask="channel")
    return Sequential({"actnorm": ActNorm(channels), "permutation": permutation, "coupling": coupling})


def build_glow(config: GlowConfig, data: DataInfo) -> NormalizingFlow:
    """A Glow for images of shape ``data.shape = (C, H, W)`` with ``H`` and ``W`` divisible by ``2 ** num_levels``.

    Without a dequantizer, the flow models continuous images (the trainer feeds dequantized values in [-1, 1]). With
    ``data.num_classes > 0`` the top prior depends on the class label given as context.

    Args:
        config: the architecture's options.
        data: what the flow models: ``shape = (C, H, W)``, ``num_classes`` (0: unconditional).

    Returns:
        the flow; its transform's steps are the levels ``"level0"``, ... for
        :meth:`~nfkit_core.NormalizingFlow.intermediates`.

    Raises:
        ValueError: data that are not images, or ``H``, ``W`` not divisible by ``2 ** num_levels``.

    Example:
        Glow is registered as the architecture ``glow``; a preset and the data description build it:

        >>> import torch
        >>> from nfkit_core.data import DataInfo
        >>> from nfkit_core.plugins import get_registry
        >>> spec = get_registry().architectures.get("glow")
        >>> config = spec.make_config("digits-tiny")  # = GlowConfig(**PRESETS["digits-tiny"])
        >>> flow = spec.build(config, DataInfo(shape=(1, 8, 8), num_bins=17))
        >>> x = torch.rand(2, 1, 8, 8) * 2 - 1  # continuous images in [-1, 1]
        >>> flow.bits_per_dim(x).shape
        torch.Size([2])
        >>> flow.sample(4, temperature=0.7, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 8, 8])
    """
    if len(data.shape) != 3:
        raise ValueError(f"Glow models images of shape (C, H, W), got data of shape {tuple(data.shape)}")
    channels, height, width = data.shape
    factor = 2 ** config.num_levels
    if height % factor or width % factor:
        raise ValueError(f"Glow with {config.num_levels} levels needs height and width divisible by {factor}, got "
                         f"{height}x{width}; use fewer levels")

    levels: dict[str, Transform] = {}
    for level in range(config.num_levels):
        channels, height, width = channels * 4, height // 2, width // 2
        steps = {f"step{k}": glow_step(channels, config, index=level * config.steps_per_level + k)
                 for k in range(config.steps_per_level)}
        parts: dict[str, Transform] = {"squeeze": Squeeze(2), "steps": Sequential(steps)}
        if level < config.num_levels - 1:
            kept = channels // 2
            prior_net = ZeroConv2d(kept, 2 * (channels - kept), edge_bias=config.edge_bias)
            parts["split"] = Split(kept, conditioner=prior_net, params="interleaved")
            channels = kept
        levels[f"level{level}"] = Sequential(parts)

    top_shape = (channels, height, width)
    if data.num_classes > 0:
        prior = ClassConditionalGaussian(top_shape, data.num_classes)
    elif config.learn_top:
        prior = LearnedTopPrior(top_shape, edge_bias=config.edge_bias)
    else:
        prior = StandardNormal(top_shape)
    flow = NormalizingFlow(Sequential(levels), prior, data_shape=tuple(data.shape))
    # Knowledge distillation matches the latent each level passes on (nfkit-distill's level boundaries).
    flow.matchable_intermediates = [[f"level{level}.split"] for level in range(config.num_levels - 1)] + [
        [f"level{config.num_levels - 1}"]]
    return flow
