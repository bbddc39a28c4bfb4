"""Preprocessing between a dataset and a flow.

Image datasets give integer levels ``x`` in ``[0, K)`` (``K = num_bins``). What a flow sees depends on the flow:

* a flow with its own ``dequantizer`` (e.g. DenseFlow's variational dequantization) gets the levels as they are;
* otherwise the levels are *uniformly dequantized* to ``y = (x + u) / K * 2 - 1`` with ``u ~ U[0, 1)^D``, so that
  ``y`` lies in ``[-1, 1]``. The model's density of ``y`` bounds the discrete likelihood after the change of units
  from bins of width ``2 / K``: ``log P(x) >= E_u[log p(y)] + D log(2 / K)`` (Theis et al. 2016, eq. 12);
* or, as TarFlow trains (Zhai et al. 2024, section 2.3), the levels are scaled to ``x / (K - 1) * 2 - 1`` and
  *Gaussian noise* of standard deviation ``sigma`` is added. The density is then that of the noisy images; its
  bits/dim use the level spacing ``2 / (K - 1)`` as bin width and are not comparable with dequantized bits/dim.

Continuous data (tabular, toy2d) is used as it is, optionally with Gaussian noise. Training batches can also be
flipped horizontally, and class labels dropped (set to ``-1``) with a given probability for classifier-free guidance
(Ho & Salimans 2022). Every random draw comes from :mod:`nfkit_core.noise`, so a caller can seed and replay it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from nfkit_core import noise
from nfkit_core.errors import ConfigError
from nfkit_core.extras import require
from nfkit_core.specs import DataInfo

__all__ = ["center_crop_resize", "random_horizontal_flip", "scale_levels", "uniform_dequantize",
           "add_gaussian_noise", "drop_labels", "Preprocessing", "MODES"]

MODES = ("levels", "dequantize", "noise", "continuous")


def center_crop_resize(image: Tensor, size: int) -> Tensor:
    """Crop the largest centred square of a ``(C, H, W)`` ``uint8`` image and resize it to ``size x size``.

    Args:
        image: a ``(C, H, W)`` ``uint8`` image.
        size: the side of the result, in pixels.

    Returns:
        a ``(C, size, size)`` ``uint8`` image.
    """
    functional = require("torchvision.transforms.v2.functional", "resizing images")

    side = min(image.shape[-2:])
    square = functional.center_crop(image, [side, side])
    if side == size:
        return square
    return functional.resize(square, [size, size], antialias=True)


def random_horizontal_flip(x: Tensor) -> Tensor:
    """Mirror each image of a ``(B, C, H, W)`` batch left-right with probability 1/2.

    Args:
        x: a batch of images ``(B, C, H, W)``; the coin flips come from :mod:`nfkit_core.noise`.
    """
    flip = noise.rand((x.shape[0],), device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def scale_levels(levels: Tensor, num_bins: int) -> Tensor:
    """Map levels ``0 .. K-1`` linearly onto ``[-1, 1]``.

    Args:
        levels: integer levels (any shape, any dtype).
        num_bins: the number of levels ``K``.

    Example:
        >>> import torch
        >>> scale_levels(torch.tensor([0, 8, 16]), num_bins=17)
        tensor([-1.,  0.,  1.])
    """
    return levels / (num_bins - 1) * 2 - 1


def uniform_dequantize(levels: Tensor, num_bins: int) -> Tensor:
    """``(x + u) / K * 2 - 1`` with ``u ~ U[0, 1)``: continuous values in ``[-1, 1]``, one bin of width ``2 / K``
    per level.

    Args:
        levels: integer levels ``0 .. K-1`` as floats (any shape).
        num_bins: the number of levels ``K``.
    """
    u = noise.rand(levels.shape, device=levels.device, dtype=levels.dtype)
    return (levels + u) / num_bins * 2 - 1


def add_gaussian_noise(x: Tensor, sigma: float) -> Tensor:
    """``x + sigma * eps`` with ``eps ~ N(0, I)`` from :mod:`nfkit_core.noise`.

    Args:
        x: data in the flow's units (e.g. ``[-1, 1]`` for images).
        sigma: the noise standard deviation, in the same units.
    """
    return x + sigma * noise.randn(x.shape, device=x.device, dtype=x.dtype)


def drop_labels(labels: Tensor, probability: float) -> Tensor:
    """Replace each label by ``-1`` (no class) with the given probability.

    Args:
        labels: class labels of shape ``(B,)``.
        probability: in ``[0, 1)``.
    """
    dropped = noise.rand(labels.shape, device=labels.device) < probability
    return torch.where(dropped, torch.full_like(labels, -1), labels)


@dataclass(frozen=True)
class Preprocessing:
    """How batches of one dataset are prepared for one flow (see the module docstring for the modes).

    Attributes:
        mode: ``"levels"``, ``"dequantize"``, ``"noise"`` or ``"continuous"``.
        num_bins: levels per dimension of image data (``None`` for continuous data).
        noise_std: standard deviation of the Gaussian noise (``"noise"``, or ``"continuous"`` when positive).
        hflip: flip training images horizontally at random.
        label_dropout: probability of dropping a training label to ``-1``.
    """

    mode: str
    num_bins: int | None = None
    noise_std: float = 0.0
    hflip: bool = False
    label_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown preprocessing mode {self.mode!r}; modes: {', '.join(MODES)}")
        if self.noise_std < 0 or not 0 <= self.label_dropout < 1:
            raise ConfigError(f"need noise_std >= 0 and 0 <= label_dropout < 1, got {self.noise_std} and "
                             f"{self.label_dropout}")

    @classmethod
    def choose(cls, info: DataInfo, flow_dequantizes: bool, noise_std: float = 0.0, hflip: bool = False,
               label_dropout: float = 0.0) -> Preprocessing:
        """The preprocessing for data described by ``info`` and a flow that does (or does not) dequantize.

        Args:
            info: the data: integer levels when ``info.num_bins`` is set, else continuous.
            flow_dequantizes: the flow takes integer levels and dequantizes them itself.
            noise_std: Gaussian noise augmentation instead of uniform dequantization (0: none).
            hflip: flip training images horizontally at random.
            label_dropout: probability of dropping a training label to ``-1``.

        Raises:
            ConfigError: flips of data that are not images, a dequantizing flow for continuous data, or noise
                augmentation for a flow that dequantizes.
        """
        if hflip and len(info.shape) != 3:
            raise ConfigError(f"horizontal flips need images of shape (C, H, W), the data has shape {info.shape}")
        if info.num_bins is None:
            if flow_dequantizes:
                raise ConfigError("the flow has a dequantizer, but the data is continuous (no num_bins)")
            mode = "continuous"
        elif flow_dequantizes:
            if noise_std > 0:
                raise ConfigError("the flow dequantizes the data itself; Gaussian noise augmentation "
                                 "(noise_std > 0) applies only to flows without a dequantizer")
            mode = "levels"
        else:
            mode = "noise" if noise_std > 0 else "dequantize"
        return cls(mode, info.num_bins, noise_std, hflip, label_dropout)

    @property
    def log_bin_width(self) -> float:
        """``log`` of the bin width that converts the model's density into a discrete likelihood (0 if none)."""
        if self.mode == "dequantize":
            return math.log(2 / self.num_bins)
        if self.mode == "noise":
            return math.log(2 / (self.num_bins - 1))
        return 0.0

    def __call__(self, x: Tensor, labels: Tensor, train: bool) -> tuple[Tensor, Tensor]:
        """Prepare a batch; flips and label dropout only when ``train``."""
        if train and self.hflip:
            x = random_horizontal_flip(x)
        if self.mode == "dequantize":
            x = uniform_dequantize(x, self.num_bins)
        elif self.mode == "noise":
            x = add_gaussian_noise(scale_levels(x, self.num_bins), self.noise_std)
        elif self.mode == "continuous" and self.noise_std > 0:
            x = add_gaussian_noise(x, self.noise_std)
        if train and self.label_dropout > 0:
            labels = drop_labels(labels, self.label_dropout)
        return x, labels

    def to_unit_interval(self, samples: Tensor) -> Tensor:
        """Map image samples of the flow back to ``[0, 1]`` for display (non-finite values become 0).

        Args:
            samples: samples of the flow, ``(B, C, H, W)``.

        Raises:
            ValueError: continuous (non-image) data.
        """
        if self.mode == "continuous":
            raise ValueError("continuous data has no image range")
        samples = torch.nan_to_num(samples.float(), nan=0.0, posinf=0.0, neginf=0.0)
        unit = samples / (self.num_bins - 1) if self.mode == "levels" else (samples + 1) / 2
        return unit.clamp(0, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for checkpoints."""
        return asdict(self)
