"""Guidance of TarFlow sampling (Zhai et al. 2025, "Normalizing Flows are Capable Generative Models").

At every inverse step the block predicts ``(a, b)`` twice: once as asked (the class label, attention temperature 1)
and once "unconditionally" (no label, i.e. the mean class embedding, and attention temperature ``attn_temp``). The
prediction is pushed away from the unconditional one::

    a <- a_c + w (a_c - a_u),   b <- b_c + w (b_c - b_u)

For a conditional model this is classifier-free guidance; for an unconditional model the two passes differ only in
the attention temperature. With annealing the weight grows linearly over the tokens, ``w_i = (i + 1) / (T - 1) w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Guidance", "guide"]


@dataclass(frozen=True)
class Guidance:
    """How to guide the inverse steps; the field names of the official ``reverse`` are accepted by
    :meth:`TarFlow.sample <nfkit_core.NormalizingFlow.sample>`.

    Attributes:
        weight: guidance weight ``w`` (official ``guidance``); ``0`` disables guidance.
        guide_what: which predictions to guide: ``"ab"``, ``"a"`` (log-scale) or ``"b"`` (shift).
        attn_temp: attention temperature of the unconditional pass.
        annealed: grow the weight linearly over the tokens (official ``annealed_guidance``).
    """

    weight: float = 0.0
    guide_what: str = "ab"
    attn_temp: float = 1.0
    annealed: bool = False

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"guidance weight must be >= 0, got {self.weight}")
        if set(self.guide_what) - {"a", "b"}:
            raise ValueError(f"guide_what must be made of 'a' and 'b' (e.g. 'ab'), got {self.guide_what!r}")
        if self.attn_temp <= 0:
            raise ValueError(f"attn_temp must be > 0, got {self.attn_temp}")

    @property
    def active(self) -> bool:
        """Whether the unconditional pass is needed at all."""
        return self.weight > 0 and bool(self.guide_what)

    def weight_at(self, step: int | Tensor, num_tokens: int) -> float | Tensor:
        """The weight at inverse step ``step`` (which predicts token ``step + 1``) of ``num_tokens``; a tensor of
        steps gives a tensor of weights (the parallel sampler predicts many tokens at once).

        Args:
            step: the inverse step, from 0 to ``num_tokens - 2``, or a tensor of steps.
            num_tokens: the block's sequence length ``T``.

        Returns:
            ``weight``, or ``(step + 1) / (T - 1) * weight`` when ``annealed`` (a float tensor of ``step``'s shape for
            a tensor).
        """
        if self.annealed:
            return (step + 1) / (num_tokens - 1) * self.weight
        if isinstance(step, Tensor):
            return torch.full(step.shape, self.weight, device=step.device)
        return self.weight

    def combine(self, conditional: tuple[Tensor, Tensor], unconditional: tuple[Tensor, Tensor], step: int | Tensor,
                num_tokens: int) -> tuple[Tensor, Tensor]:
        """The guided ``(a, b)`` from the conditional and unconditional predictions at ``step`` (an int, or a tensor
        of steps that broadcasts against the predictions): :func:`guide` at :meth:`weight_at`.

        Args:
            conditional: ``(a, b)``, the log-scale and shift predicted with the labels, each ``(batch, t, D)``.
            unconditional: ``(a_u, b_u)``, predicted without them (and at ``attn_temp``), of the same shapes.
            step: the inverse step (see :meth:`weight_at`).
            num_tokens: the block's sequence length ``T``.

        Returns:
            the guided ``(a, b)``.
        """
        return guide(conditional, unconditional, self.weight_at(step, num_tokens), self.guide_what)


def guide(conditional: tuple[Tensor, Tensor], unconditional: tuple[Tensor, Tensor], weight: float | Tensor,
          guide_what: str) -> tuple[Tensor, Tensor]:
    """Push the conditional prediction away from the unconditional one.

    Args:
        conditional: ``(a, b)``, the log-scale and shift predicted with the labels.
        unconditional: ``(a_u, b_u)``, predicted without them (and at ``attn_temp``), of the same shapes.
        weight: the guidance weight ``w``, a float or a tensor that broadcasts against the predictions.
        guide_what: the parts to guide, ``"ab"``, ``"a"`` or ``"b"``.

    Returns:
        ``(a + w (a - a_u), b + w (b - b_u))`` for the parts named in ``guide_what``; the others stay conditional.
    """
    (a, b), (a_u, b_u) = conditional, unconditional
    if "a" in guide_what:
        a = a + weight * (a - a_u)
    if "b" in guide_what:
        b = b + weight * (b - b_u)
    return a, b
