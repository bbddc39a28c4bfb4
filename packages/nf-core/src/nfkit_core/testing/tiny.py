"""``tiny``: a small flow architecture for testing nfkit-core's trainer, checkpoints and command line.

nfkit-core never imports an architecture package, so its tests register this one by hand::

    manager = PluginManager(autoload=False)
    manager.register(nfkit_core.testing.tiny, "nf-testing")
    registry = manager.registry            # nfkit-core's datasets and commands, plus "tiny"

It is a Real NVP-style flow built from :mod:`nfkit_core.layers`: for images, a squeeze, then ActNorm (data-dependent
initialisation) and two affine couplings with convolutional conditioners; for vectors, the same with linear ones. A
class-conditional build (``num_classes > 0``) uses a class-conditional Gaussian prior with one extra "null" class for
the dropped label ``-1``. With ``dequantize=True`` the flow has its own uniform dequantizer and receives the integer
levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from nfkit_core.errors import ConfigError
from nfkit_core.flow import NormalizingFlow
from nfkit_core.layers import ActNorm, AffineCoupling, Squeeze, UniformDequantization
from nfkit_core.layers.conditioning import zero_init
from nfkit_core.plugins import ArchitectureSpec, DataInfo, Registrar, hookimpl
from nfkit_core.priors import ClassConditionalGaussian, StandardNormal
from nfkit_core.transform import Sequential

__all__ = ["TinyConfig", "build_tiny", "SPEC"]


@dataclass
class TinyConfig:
    """Options of the ``tiny`` test architecture.

    Attributes:
        hidden: width of the conditioner networks.
        dequantize: give the flow its own uniform dequantizer (it then receives integer levels).
    """

    hidden: int = 8
    dequantize: bool = False


class _Conditioner(nn.Module):
    """Two layers (convolutions for images, linear for vectors); the last starts at zero, so each coupling starts
    as the identity. The context is accepted and ignored."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, image: bool) -> None:
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 3, padding=1)) if image else nn.Linear
        self.net = nn.Sequential(layer(in_channels, hidden), nn.ReLU(), zero_init(layer(hidden, out_channels)))

    def forward(self, h: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(h)


class _NullClassGaussian(ClassConditionalGaussian):
    """A class-conditional Gaussian whose last class stands for the dropped label ``-1``."""

    def mean_and_log_scale(self, context: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        labels = context.long() if context is not None else None
        return super().mean_and_log_scale(labels % self.num_classes if labels is not None else None, n)


def build_tiny(config: TinyConfig, data: DataInfo) -> NormalizingFlow:
    """Build the tiny flow for data of shape ``data.shape`` (``(C, H, W)`` with even ``H, W``, or ``(D,)``).

    Args:
        config: the tiny architecture's options.
        data: what the flow models.
    """
    image = len(data.shape) == 3
    if image:
        channels, height, width = data.shape
        latent_shape = (4 * channels, height // 2, width // 2)
        steps: dict[str, nn.Module] = {"squeeze": Squeeze(2)}
    else:
        latent_shape = (math.prod(data.shape),)
        steps = {}
    features = latent_shape[0]
    half, rest = features // 2, features - features // 2
    steps["actnorm"] = ActNorm(features)
    steps["coupling1"] = AffineCoupling(_Conditioner(half, 2 * rest, config.hidden, image))
    steps["coupling2"] = AffineCoupling(_Conditioner(rest, 2 * half, config.hidden, image), reverse_mask=True)
    prior = (_NullClassGaussian(latent_shape, data.num_classes + 1) if data.num_classes > 0
             else StandardNormal(latent_shape))
    dequantizer = None
    if config.dequantize:
        if data.num_bins is None:
            raise ConfigError("tiny: dequantize=True needs quantized data (num_bins)")
        dequantizer = UniformDequantization(data.num_bins, low=-1.0, high=1.0)
    return NormalizingFlow(Sequential(steps), prior, dequantizer=dequantizer, data_shape=tuple(data.shape))


SPEC = ArchitectureSpec("tiny", TinyConfig, build_tiny, "a small coupling flow for nfkit-core's own tests",
                        presets={"digits": {"hidden": 12}})


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    architectures.add(SPEC)
