"""Affine and additive coupling layers (Dinh et al. 2015 "NICE", 2017 "Real NVP"; Kingma & Dhariwal 2018 "Glow").

The input is split by a mask into an identity part ``x_a`` and a transformed part ``x_b``. A conditioner network
sees only ``x_a`` (and the context, and the features below), so the map is triangular and its log-determinant is the
sum of the log-scales:

    z_a = x_a,    z_b = x_b * exp(log_s(x_a)) + shift(x_a)      (Real NVP, section 3.2)

Masks:
    ``"channel"``: ``x_a`` is the first ``C // 2`` channels, ``x_b`` the rest; the conditioner maps ``x_a`` to the
    parameters of ``x_b`` (``2 * (C - C // 2)`` output channels for the affine coupling). Works on ``(B, C)`` vectors
    and ``(B, C, *spatial)``.
    ``"checkerboard"``: ``x_a`` is the pixels with ``(row + column)`` even; the conditioner sees the whole ``(B, C, H,
    W)`` input with the other pixels zeroed and returns parameters for all ``C`` channels (``2 * C`` for the affine
    coupling), of which only those of the odd pixels are used (Real NVP, section 3.4).

``reverse_mask=True`` swaps the roles of the two parts, so that stacked couplings can alternate: the identity part is
then the last ``C // 2`` channels, or the odd pixels.

Features:
    Both couplings take ``features`` as a keyword of ``forward`` and ``inverse`` (their :attr:`internal_inputs
    <nfkit_core.transform.Transform.internal_inputs>`): inputs an architecture computes itself, such as the features
    of ``x`` that condition a variational dequantizer's encoder (Flow++, section 3.1). They are not ``context``. The
    conditioner then sees ``x_a`` and the features joined along the channels, ``torch.cat([x_a, features], dim=1)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit_core.layers.conditioning import PARAM_LAYOUTS, check_choice, run_conditioner, split_params
from nfkit_core.transform import Transform, sum_except_batch

__all__ = ["AffineCoupling", "AdditiveCoupling", "LOG_SCALE_FUNCTIONS"]

LOG_SCALE_FUNCTIONS = {
    "exp": lambda h: h,
    "sigmoid": lambda h: F.logsigmoid(h + 2.0),  # Glow: scale = sigmoid(h + 2)
    "tanh": lambda h: 2.0 * torch.tanh(h / 2.0),  # DenseFlow / survae: scale = exp(2 tanh(h / 2))
}


class _Mask:
    """Splits an input into the conditioning part and the transformed part, and puts them back together."""

    def __init__(self, kind: str, reverse: bool) -> None:
        self.kind = check_choice("mask", kind, ("channel", "checkerboard"))
        self.reverse = reverse

    def _sizes(self, x: Tensor) -> list[int]:
        sizes = [x.shape[1] // 2, x.shape[1] - x.shape[1] // 2]
        return sizes[::-1] if self.reverse else sizes

    def _checkerboard(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"the checkerboard mask needs images (B, C, H, W), got shape {tuple(x.shape)}")
        rows = torch.arange(x.shape[2], device=x.device).view(-1, 1)
        cols = torch.arange(x.shape[3], device=x.device).view(1, -1)
        return ((rows + cols) % 2 == int(self.reverse)).to(x.dtype)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_a, x_b)``: the conditioner's input and the part to transform."""
        if self.kind == "checkerboard":
            return x * self._checkerboard(x), x
        if x.shape[1] < 2:
            raise ValueError(f"a channel-mask coupling needs at least 2 channels, got shape {tuple(x.shape)}")
        x_a, x_b = x.split(self._sizes(x), dim=1)
        return (x_b, x_a) if self.reverse else (x_a, x_b)

    def merge(self, x_a: Tensor, z_b: Tensor) -> Tensor:
        """Put the identity part and the transformed part back into one tensor."""
        if self.kind == "checkerboard":
            return z_b
        return torch.cat([z_b, x_a] if self.reverse else [x_a, z_b], dim=1)

    def restrict(self, param: Tensor, x: Tensor) -> Tensor:
        """Zero a parameter where the input is kept (only the checkerboard transforms a full-size ``x_b``)."""
        return param * (1 - self._checkerboard(x)) if self.kind == "checkerboard" else param


def _conditioner_input(x_a: Tensor, features: Tensor | None) -> Tensor:
    """``x_a``, joined with the features along the channels when there are any."""
    return x_a if features is None else torch.cat([x_a, features], dim=1)


class AffineCoupling(Transform):
    """Affine coupling ``z_b = x_b * exp(log_s) + shift`` with ``(log_s, shift)`` from ``conditioner(x_a)``.

    Args:
        conditioner: network called as ``conditioner(x_a)`` or ``conditioner(x_a, context)`` (``x_a`` joined with the
            ``features`` when they are given); it returns twice as many channels as ``x_b`` has (see the module
            docstring for the checkerboard mask).
        mask: ``"channel"`` or ``"checkerboard"``.
        log_scale: how the raw output ``h`` becomes ``log_s``: ``"exp"`` (``h``), ``"sigmoid"`` (``logsigmoid(h +
            2)``, Glow) or ``"tanh"`` (``2 tanh(h / 2)``, DenseFlow).
        params: layout of the conditioner output: ``"halves"`` (first half log-scale, second half shift, as survae) or
            ``"interleaved"`` (shift ``h[:, 0::2]``, log-scale ``h[:, 1::2]``, as openai/glow).
        reverse_mask: swap the identity and transformed parts.
        shift_first: use ``z_b = (x_b + shift) * exp(log_s)`` instead (openai/glow's order of operations).
    """

    internal_inputs = ("features",)

    def __init__(self, conditioner: nn.Module, mask: str = "channel", log_scale: str = "exp",
                 params: str = "halves", reverse_mask: bool = False, shift_first: bool = False) -> None:
        super().__init__()
        self.conditioner = conditioner
        self.mask = _Mask(mask, reverse_mask)
        self.log_scale = check_choice("log_scale", log_scale, tuple(LOG_SCALE_FUNCTIONS))
        self.params = check_choice("params", params, PARAM_LAYOUTS)
        self.shift_first = bool(shift_first)

    def _log_scale_and_shift(self, x_a: Tensor, x_b: Tensor, context: Tensor | None,
                             features: Tensor | None) -> tuple[Tensor, Tensor]:
        h = run_conditioner(self.conditioner, _conditioner_input(x_a, features), context)
        expected = (x_b.shape[0], 2 * x_b.shape[1], *x_b.shape[2:])
        if tuple(h.shape) != expected:
            raise ValueError(f"the coupling conditioner must return shape {expected} for a transformed part of shape "
                             f"{tuple(x_b.shape)}, got {tuple(h.shape)}")
        if self.params == "halves":
            raw_log_scale, shift = split_params(h, "halves")
        else:
            shift, raw_log_scale = split_params(h, "interleaved")
        log_s = LOG_SCALE_FUNCTIONS[self.log_scale](raw_log_scale)
        return self.mask.restrict(log_s, x_b), self.mask.restrict(shift, x_b)

    def forward(self, x: Tensor, context: Tensor | None = None, *,
                features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = self.mask.split(x)
        log_s, shift = self._log_scale_and_shift(x_a, x_b, context, features)
        z_b = (x_b + shift) * log_s.exp() if self.shift_first else x_b * log_s.exp() + shift
        return self.mask.merge(x_a, z_b), sum_except_batch(log_s)

    def inverse(self, z: Tensor, context: Tensor | None = None, *, features: Tensor | None = None,
                **options: Any) -> tuple[Tensor, Tensor]:
        z_a, z_b = self.mask.split(z)
        log_s, shift = self._log_scale_and_shift(z_a, z_b, context, features)
        x_b = z_b * torch.exp(-log_s) - shift if self.shift_first else (z_b - shift) * torch.exp(-log_s)
        return self.mask.merge(z_a, x_b), -sum_except_batch(log_s)


class AdditiveCoupling(Transform):
    """Additive coupling ``z_b = x_b + shift(x_a)`` (NICE): volume preserving, log-det 0.

    Args:
        conditioner: network called as ``conditioner(x_a)`` or ``conditioner(x_a, context)`` (``x_a`` joined with the
            ``features`` when they are given), returning as many channels as ``x_b`` has.
        mask: ``"channel"`` or ``"checkerboard"``.
        reverse_mask: swap the identity and transformed parts.
    """

    internal_inputs = ("features",)

    def __init__(self, conditioner: nn.Module, mask: str = "channel", reverse_mask: bool = False) -> None:
        super().__init__()
        self.conditioner = conditioner
        self.mask = _Mask(mask, reverse_mask)

    def _shift(self, x_a: Tensor, x_b: Tensor, context: Tensor | None, features: Tensor | None) -> Tensor:
        shift = run_conditioner(self.conditioner, _conditioner_input(x_a, features), context)
        if shift.shape != x_b.shape:
            raise ValueError(f"the coupling conditioner must return shape {tuple(x_b.shape)}, got {tuple(shift.shape)}")
        return self.mask.restrict(shift, x_b)

    def forward(self, x: Tensor, context: Tensor | None = None, *,
                features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = self.mask.split(x)
        z = self.mask.merge(x_a, x_b + self._shift(x_a, x_b, context, features))
        return z, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, *, features: Tensor | None = None,
                **options: Any) -> tuple[Tensor, Tensor]:
        z_a, z_b = self.mask.split(z)
        x = self.mask.merge(z_a, z_b - self._shift(z_a, z_b, context, features))
        return x, z.new_zeros(z.shape[0])
