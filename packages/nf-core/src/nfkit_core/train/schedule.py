"""The learning-rate schedule: linear warm-up, then cosine decay (Loshchilov & Hutter 2017)."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0,
                  start_ratio: float = 0.0) -> float:
    """The learning rate of optimizer step ``step`` (counted from 0).

    Rises linearly over ``warmup_steps`` from ``start_ratio * base_lr`` (the first step uses
    ``start_ratio * base_lr + (1 - start_ratio) * base_lr / warmup_steps``), then follows half a cosine from
    ``base_lr`` down to ``min_lr_ratio * base_lr`` at ``total_steps``.

    Args:
        step: the optimizer step, from 0.
        base_lr: the peak learning rate.
        warmup_steps: the steps of the linear warm-up.
        total_steps: the step at which the cosine reaches its minimum.
        min_lr_ratio: the final learning rate as a fraction of ``base_lr``.
        start_ratio: the learning rate at the start of the warm-up as a fraction of ``base_lr``.

    Example:
        >>> [round(warmup_cosine(step, 1.0, warmup_steps=2, total_steps=4), 3) for step in range(5)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return base_lr * (start_ratio + (1 - start_ratio) * (step + 1) / warmup_steps)
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return base_lr * (min_lr_ratio + (1 - min_lr_ratio) * cosine)
