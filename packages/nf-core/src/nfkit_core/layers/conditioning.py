"""How layers call the networks that parametrise them, and how they read the networks' outputs.

A conditioner is any :class:`torch.nn.Module`. Layers call it as ``net(h)`` when the flow has no context and as
``net(h, context)`` when it has one, so the same rule holds for couplings, splits and augmentations.

Under bf16 autocast the networks compute in bf16 while the layers stay in float32: a layer reads its network's output
in (at least) float32, so that the values it transforms and the log-determinants summed over thousands of elements
keep float32 precision. Any function of the conditioning input gives an exact inverse and log-determinant, so this
mixed precision changes the model slightly but never makes its likelihood approximate.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

__all__ = ["PARAM_LAYOUTS", "at_least_float32", "check_choice", "gaussian_params", "run_conditioner", "split_params",
           "zero_init"]

PARAM_LAYOUTS = ("halves", "interleaved")

M = TypeVar("M", bound=nn.Module)
"""Any :class:`torch.nn.Module` type (:func:`zero_init` returns the layer it is given)."""


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is in a half-precision type (as under bf16 autocast), else unchanged (float64 stays
    float64, e.g. in the conformance suite's Jacobian checks).

    Args:
        x: any tensor.
    """
    return x.to(torch.promote_types(x.dtype, torch.float32))


def zero_init(layer: M) -> M:
    """Set a layer's ``weight`` and ``bias`` (if any) to zero and return it.

    The last layer of a conditioner starts at zero so that the flow layer it parametrises starts as the identity
    (Glow, section 3.3; the split priors start as ``N(0, I)`` the same way).

    Args:
        layer: a layer with a ``weight`` (e.g. :class:`torch.nn.Conv2d`, :class:`torch.nn.Linear`).

    Returns:
        the same layer.
    """
    nn.init.zeros_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def run_conditioner(net: nn.Module, h: Tensor, context: Tensor | None) -> Tensor:
    """``net(h)`` without context, ``net(h, context)`` with one; the result at least in float32.

    Args:
        net: the conditioner network.
        h: its input, batch first.
        context: the conditioning, or ``None``.

    Returns:
        the network's output, in float32 (or float64).
    """
    return at_least_float32(net(h) if context is None else net(h, context))


def split_params(h: Tensor, layout: str) -> tuple[Tensor, Tensor]:
    """Read two parameters per element from the channels (dim 1) of a network output ``h``.

    ``"halves"``: the first half of the channels is the first parameter, the second half the second (survae's
    channel-wise ``ElementwiseParams2d``). ``"interleaved"``: even channels are the first parameter, odd channels the
    second (openai/glow's ``h[..., 0::2]``, ``h[..., 1::2]``).

    Args:
        h: a network output of shape ``(B, 2 K, ...)``.
        layout: ``"halves"`` or ``"interleaved"``.

    Returns:
        the two parameters, each of shape ``(B, K, ...)``.

    Raises:
        ValueError: an odd number of channels or an unknown layout.
    """
    if h.shape[1] % 2:
        raise ValueError(f"a network giving two parameters per element needs an even number of output channels, "
                         f"got {h.shape[1]}")
    if layout == "halves":
        first, second = h.chunk(2, dim=1)
        return first, second
    if layout == "interleaved":
        return h[:, 0::2], h[:, 1::2]
    raise ValueError(f"unknown parameter layout {layout!r}; expected one of {PARAM_LAYOUTS}")


def gaussian_params(net: nn.Module | None, h: Tensor, context: Tensor | None, shape: tuple[int, ...],
                    layout: str, owner: str) -> tuple[Tensor, Tensor]:
    """Mean and log-scale, each of ``shape``, of a diagonal Gaussian predicted by ``net`` from ``h``.

    Without a network the Gaussian is ``N(0, I)``. ``owner`` names the network in the error raised when its output
    has the wrong number of channels.

    Args:
        net: the network, or ``None`` for ``N(0, I)``.
        h: its input, batch first.
        context: the conditioning, or ``None``.
        shape: the shape of the mean and of the log-scale, batch first.
        layout: how the network's channels hold the two parameters (see :func:`split_params`).
        owner: names the network in error messages.

    Returns:
        ``(mean, log_scale)``, each of ``shape``.

    Raises:
        ValueError: the network's output does not give two parameters of ``shape``.
    """
    if net is None:
        zeros = h.new_zeros(shape)
        return zeros, zeros
    mean, log_scale = split_params(run_conditioner(net, h, context), layout)
    if mean.shape != shape:
        raise ValueError(f"{owner} must give mean and log-scale of shape {shape} each (i.e. {2 * shape[1]} "
                         f"channels), got {tuple(mean.shape)} each")
    return mean, log_scale


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming the option.

    Args:
        name: the option's name, for the message.
        value: its value.
        choices: the allowed values.

    Raises:
        ValueError: ``value`` is not among ``choices``.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
