"""Input checks shared by every layer, prior and flow, and the switch for the data-dependent ones.

Shape checks (:func:`check_event_shape`, :func:`check_channels`, :func:`check_log_det`) read only shapes: they cost
nothing and always run. Checks of the *values* (finite inputs, labels in range, integer levels) read the data, which
on a GPU waits for the device at every call and splits a ``torch.compile`` graph. Like ``torch.distributions``'
``validate_args`` they can be switched off once a pipeline is known to feed valid data::

    nfkit_core.validation.set_validate_args(False)        # for the whole process
    with nfkit_core.validation.validate_args(False):      # for a block of code
        flow.log_prob(x)

They are on by default. Code that checks values asks :func:`validating` first.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["check_channels", "check_class_labels", "check_event_shape", "check_log_det", "set_validate_args",
           "validate_args", "validating"]

_default = True
_override: contextvars.ContextVar[bool | None] = contextvars.ContextVar("nfkit_validate_args", default=None)


def set_validate_args(value: bool) -> None:
    """Switch the data-dependent checks on or off for the whole process (default: on).

    Args:
        value: ``True`` to run them, ``False`` to skip them.
    """
    global _default
    _default = bool(value)


@contextlib.contextmanager
def validate_args(value: bool) -> Iterator[None]:
    """Switch the data-dependent checks on or off inside a ``with`` block.

    Args:
        value: ``True`` to run them, ``False`` to skip them.

    Example:
        >>> from nfkit_core.validation import validate_args, validating
        >>> with validate_args(False):
        ...     validating()
        False
        >>> validating()
        True
    """
    token = _override.set(bool(value))
    try:
        yield
    finally:
        _override.reset(token)


def validating() -> bool:
    """Whether data-dependent checks should run now."""
    override = _override.get()
    return _default if override is None else override


def _shape_text(event_shape: Sequence[int]) -> str:
    return ", ".join(["batch", *map(str, event_shape)])


def check_event_shape(owner: str, x: Tensor, event_shape: Sequence[int], what: str = "input") -> None:
    """Check that ``x`` is ``(batch, *event_shape)``.

    Args:
        owner: who checks, for the message (e.g. the layer's class name).
        x: the tensor to check.
        event_shape: the expected shape of one sample.
        what: what ``x`` is, for the message.

    Raises:
        ValueError: another shape; the message names ``owner``, ``what`` and both shapes.
    """
    if tuple(x.shape[1:]) != tuple(event_shape) or x.dim() != len(event_shape) + 1:
        raise ValueError(f"{owner} expects {what} of shape ({_shape_text(event_shape)}), got {tuple(x.shape)}")


def check_channels(owner: str, x: Tensor, num_channels: int, what: str = "input") -> None:
    """Check that ``x`` is ``(batch, num_channels, *spatial)``.

    Args:
        owner: who checks, for the message.
        x: the tensor to check.
        num_channels: the expected size of dimension 1.
        what: what ``x`` is, for the message.

    Raises:
        ValueError: another number of channels or fewer than 2 dimensions.
    """
    if x.dim() < 2 or x.shape[1] != num_channels:
        raise ValueError(f"{owner} expects {what} of shape (batch, {num_channels}, ...), got {tuple(x.shape)}")


def check_log_det(owner: str, log_det: Tensor, batch: int) -> None:
    """Raise a ValueError unless a layer's ``log_det`` has the batch shape ``(batch,)``.

    A log-det of shape ``(batch, D)`` would broadcast silently in a sum and turn the likelihood into nonsense.

    Args:
        owner: the layer that returned it, for the message.
        log_det: the log-det to check.
        batch: the batch size.

    Raises:
        ValueError: another shape; the message says how to reduce it.
    """
    if tuple(log_det.shape) != (batch,):
        raise ValueError(f"{owner} returned a log_det of shape {tuple(log_det.shape)}; a layer must return one number "
                         f"per sample, shape ({batch},), summed over the event dimensions (e.g. with "
                         f"nfkit_core.sum_except_batch)")


def check_class_labels(owner: str, labels: Tensor | None, num_classes: int, batch: int,
                       allow_missing: bool = False) -> Tensor:
    """Class labels ``(batch,)`` as ``long``, or a TypeError/ValueError naming ``owner`` and the fix.

    ``allow_missing`` admits the label ``-1`` ("no label", as in classifier-free guidance). The range check reads
    the values and runs only while :func:`validating`.

    Args:
        owner: the class-conditional part, for the message.
        labels: the context given to it.
        num_classes: labels lie in ``[0, num_classes)``.
        batch: the batch size.
        allow_missing: admit ``-1``.

    Returns:
        the labels as a ``long`` tensor of shape ``(batch,)``.

    Raises:
        TypeError: labels that are not integers.
        ValueError: no labels, another shape, or (while validating) labels out of range.
    """
    if labels is None:
        raise ValueError(f"{owner} is class-conditional: pass class labels of shape ({batch},) as context")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{owner} needs class labels as an integer tensor, got dtype {labels.dtype}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"{owner} expects class labels of shape ({batch},), got {tuple(labels.shape)}")
    low = -1 if allow_missing else 0
    if validating() and labels.numel() and (labels.min() < low or labels.max() >= num_classes):
        allowed = f"[0, {num_classes})" + (" or -1 for 'no label'" if allow_missing else "")
        raise ValueError(f"{owner}: class labels must lie in {allowed}, got values from {int(labels.min())} to "
                         f"{int(labels.max())}")
    return labels.long()
