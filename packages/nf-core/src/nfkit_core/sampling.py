"""The labels a batch of samples is drawn for, and how a grid of such samples is laid out.

``nf train`` (its sample grids) and ``nf sample`` follow the same rules: a class-conditional flow draws the classes
in turn (``0, 1, ..., K-1, 0, 1, ...``) unless one class is asked for, and a grid of samples cycling through at most
:data:`MAX_CLASSES_PER_ROW` classes puts one cycle in each row, so that each column shows one class.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MAX_CLASSES_PER_ROW", "sample_labels", "grid_columns"]

MAX_CLASSES_PER_ROW = 16
"""Up to this many classes, a sample grid shows one class per column."""


def sample_labels(n: int, num_classes: int, label: int | None = None,
                  device: torch.device | str | None = None) -> Tensor | None:
    """The class labels of ``n`` samples: all ``label`` when given, else the classes in turn; ``None`` for an
    unconditional flow (``num_classes == 0``).

    Args:
        n: the number of samples.
        num_classes: the flow's number of classes (0: unconditional).
        label: one class for every sample, or ``None`` to cycle through the classes.
        device: where the labels are made.

    Returns:
        labels of shape ``(n,)`` (``long``), or ``None``.

    Example:
        >>> sample_labels(5, num_classes=3)
        tensor([0, 1, 2, 0, 1])
        >>> sample_labels(2, num_classes=3, label=2)
        tensor([2, 2])
    """
    if num_classes == 0:
        return None
    if label is not None:
        return torch.full((n,), label, dtype=torch.long, device=device)
    return torch.arange(n, device=device) % num_classes


def grid_columns(num_classes: int, label: int | None = None) -> int | None:
    """Images per row of a grid of samples drawn with :func:`sample_labels`: one per class when the samples cycle
    through at most :data:`MAX_CLASSES_PER_ROW` classes, else ``None`` (a square grid).

    Args:
        num_classes: the flow's number of classes (0: unconditional).
        label: the one class drawn, or ``None`` when the samples cycle through the classes.
    """
    if label is None and 0 < num_classes <= MAX_CLASSES_PER_ROW:
        return num_classes
    return None
