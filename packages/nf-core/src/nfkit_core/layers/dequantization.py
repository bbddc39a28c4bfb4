"""Dequantization: from integer levels to continuous values (Theis et al. 2016; Ho et al. 2019 "Flow++" section 3.1).

``x`` holds integer levels in ``[0, num_bins)``. Forward maps it to ``y = low + (x + u) * width`` with
``width = (high - low) / num_bins`` and ``u`` in (0, 1) drawn from ``q(u | x)``; its log-det is the variational
dequantization term ``D log(width) - log q(u | x)`` (SurVAE Flows, eq. 5, with the change of units from bins of
width 1 to bins of width ``width``). The inverse quantizes back to levels: ``floor((y - low) / width)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit_core import noise
from nfkit_core.priors import normal_log_prob
from nfkit_core.transform import Transform, sum_except_batch
from nfkit_core.validation import validating

__all__ = ["UniformDequantization", "VariationalDequantization"]


class _Dequantization(Transform):
    """Shared code: checking the levels, the change of units and the quantizing inverse."""

    is_bijective = False

    def __init__(self, num_bins: int, low: float, high: float) -> None:
        super().__init__()
        if num_bins < 2 or not high > low:
            raise ValueError(f"dequantization needs num_bins >= 2 and high > low, got num_bins={num_bins}, "
                             f"low={low}, high={high}")
        self.num_bins = int(num_bins)
        self.low = float(low)
        self.high = float(high)

    @property
    def bin_width(self) -> float:
        """The width of one bin in the output units, ``(high - low) / num_bins``."""
        return (self.high - self.low) / self.num_bins

    def check_levels(self, x: Tensor) -> Tensor:
        """Return ``x`` as floats; while :func:`nfkit_core.validation.validating`, first raise a ValueError unless
        it holds integer levels in ``[0, num_bins)``."""
        if validating():
            name = type(self).__name__
            if x.is_floating_point():
                if not torch.isfinite(x).all():
                    raise ValueError(f"{name} expects integer levels, got NaN or infinite values")
                if not torch.equal(x, x.round()):
                    sample = x[x != x.round()][:3].tolist()
                    raise ValueError(f"{name} expects integer levels in [0, {self.num_bins}), got non-integer values "
                                     f"such as {sample}")
            if x.min() < 0 or x.max() >= self.num_bins:
                raise ValueError(f"{name} expects integer levels in [0, {self.num_bins}), got values in "
                                 f"[{x.min().item()}, {x.max().item()}]")
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())

    def units_log_det(self, x: Tensor) -> Tensor:
        """``D log(width)`` for each sample: the change of units from unit bins to bins of width ``width``."""
        return x.new_full((x.shape[0],), x[0].numel() * math.log(self.bin_width))

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        """Quantize: ``floor((z - low) / width)`` clamped to ``[0, num_bins - 1]``, as floats holding levels.

        The log-det is ``-D log(width)``; ``-log q(u | x)`` of the forward cannot be recovered from ``z`` alone.
        """
        levels = torch.floor((z - self.low) / self.bin_width).clamp(0, self.num_bins - 1)
        return levels, -self.units_log_det(z)


class UniformDequantization(_Dequantization):
    """``u ~ U(0, 1)^D`` from :func:`nfkit_core.noise.rand`; ``log q(u | x) = 0``, so the log-det is ``D log(width)``.

    Args:
        num_bins: the number of levels (256 for 8-bit images).
        low, high: the output range; ``(low, high) = (0, 1)`` gives ``y = (x + u) / num_bins``.
    """

    def __init__(self, num_bins: int = 256, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__(num_bins, low, high)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.check_levels(x)
        u = noise.rand(x.shape, device=x.device, dtype=x.dtype)
        return self.low + (x + u) * self.bin_width, self.units_log_det(x)


class VariationalDequantization(_Dequantization):
    """Learned ``q(u | x)`` (Flow++): ``eps ~ N(0, I)``, ``v = encoder(eps; c)``, ``u = sigmoid(v)``, ``c = net(x)``.

    ``log q(u | x) = log N(eps) - log|det dv/deps| - log|det du/dv|`` (change of variables along the encoder).

    The features ``c`` of ``x`` reach the encoder as its internal input ``features`` (see
    :mod:`nfkit_core.transform`): ``encoder(eps, features=c)``, whose couplings join them to their conditioning half.
    The flow's ``context`` (the user's conditioning) is not passed to the encoder: ``q(u | x)`` depends on ``x`` only.

    This is survae's ``VariationalDequantization`` with a ``ConditionalInverseFlow`` encoder whose last step is a
    sigmoid: the encoder runs in its *forward* direction from noise to pre-sigmoid values, the noise is one
    :func:`nfkit_core.noise.randn` draw of shape ``(B, *noise_shape)`` taken after the context net runs, and with
    ``(low, high) = (0, 1)`` the output is survae's ``(x + u) / num_bins``. A learned base ``N(loc, exp(log_scale))``
    as survae's ``ConvNormal2d`` is an :class:`~nfkit_core.layers.ElementwiseAffine` as the encoder's first step.

    Args:
        encoder: a :class:`~nfkit_core.Transform` called as ``encoder(eps, features=c)`` if it names ``"features"``
            in its ``internal_inputs``, else as ``encoder(eps)`` (then ``q(u)`` does not depend on ``x``); it returns
            pre-sigmoid values of the shape of ``x`` and the log-det of that map (it may change shape, e.g. end with
            an ``Unsqueeze``).
        num_bins: the number of levels.
        low, high: the output range.
        context_net: network computing the encoder's features ``c`` from the levels ``x`` (as floats); ``c = x`` when
            ``None``.
        noise_shape: the shape of one noise draw (without batch); the shape of ``x`` when ``None``.
    """

    def __init__(self, encoder: Transform, num_bins: int = 256, low: float = 0.0, high: float = 1.0,
                 context_net: nn.Module | None = None, noise_shape: Sequence[int] | None = None) -> None:
        super().__init__(num_bins, low, high)
        self.encoder_takes_features = "features" in getattr(encoder, "internal_inputs", ())
        if context_net is not None and not self.encoder_takes_features:
            raise ValueError(f"the dequantization encoder ({type(encoder).__name__}) ignores the features that "
                             f"context_net computes: give it a layer that names 'features' in its internal_inputs "
                             f"(such as an AffineCoupling), or drop context_net")
        self.encoder = encoder
        self.context_net = context_net
        self.noise_shape = tuple(int(d) for d in noise_shape) if noise_shape is not None else None

    def sample_with_log_prob(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Draw ``u ~ q(u | x)`` for levels ``x`` (floats) and return ``(u, log q(u | x))``.

        Args:
            x: integer levels as floats, ``(B, *event_shape)``.

        Returns:
            ``u`` in ``(0, 1)``, the shape of ``x``, and ``log q(u | x)``, shape ``(B,)``, in nats.
        """
        c = self.context_net(x) if self.context_net is not None else x
        shape = (x.shape[0], *(self.noise_shape or x.shape[1:]))
        eps = noise.randn(shape, device=x.device, dtype=x.dtype)
        v, encoder_log_det = self.encoder(eps, features=c) if self.encoder_takes_features else self.encoder(eps)
        if v.shape != x.shape:
            raise ValueError(f"the dequantization encoder must return the shape of x, {tuple(x.shape)}, "
                             f"got {tuple(v.shape)}")
        log_sigmoid_det = sum_except_batch(F.logsigmoid(v) + F.logsigmoid(-v))
        log_q = sum_except_batch(normal_log_prob(eps)) - encoder_log_det - log_sigmoid_det
        return torch.sigmoid(v), log_q

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.check_levels(x)
        u, log_q = self.sample_with_log_prob(x)
        return self.low + (x + u) * self.bin_width, self.units_log_det(x) - log_q
