"""How layers call the networks that parametrise them, and how they read the networks' outputs.

A conditioner is any :class:`torch.nn.Module`. Layers call it as ``net(h)`` when the flow has no context and as
``net(h, context)`` when it has one, so the same rule holds for couplings, splits and augmentations.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PARAM_LAYOUTS", "check_choice", "run_conditioner", "split_params"]

PARAM_LAYOUTS = ("halves", "interleaved")


def run_conditioner(net: nn.Module, h: Tensor, context: Tensor | None) -> Tensor:
    """``net(h)`` without context, ``net(h, context)`` with one."""
    return net(h) if context is None else net(h, context)


def split_params(h: Tensor, layout: str) -> tuple[Tensor, Tensor]:
    """Read two parameters per element from the channels (dim 1) of a network output ``h``.

    ``"halves"``: the first half of the channels is the first parameter, the second half the second (survae's
    channel-wise ``ElementwiseParams2d``). ``"interleaved"``: even channels are the first parameter, odd channels the
    second (openai/glow's ``h[..., 0::2]``, ``h[..., 1::2]``).
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


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming the option."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
