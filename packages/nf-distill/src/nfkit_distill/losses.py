"""The distillation losses of Walton et al., "Distilling Normalizing Flows" (eq. 12-14), on given latents.

Each distance is averaged over the non-batch dimensions of one sample (as the authors' code does), so a loss is a
per-sample mean distance; the functions here return the mean over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["DISTANCES", "distance", "lkd_loss", "ilkd_loss", "skd_loss"]

DISTANCES = ("l1", "mse")


def distance(teacher: Tensor, student: Tensor, kind: str) -> Tensor:
    """``L_r`` per sample, shape ``(batch,)``: mean absolute (``"l1"``) or squared (``"mse"``) difference.

    Args:
        teacher: the teacher's tensor, shape ``(batch, ...)``; no gradient flows into it.
        student: the student's, of the same shape.
        kind: ``"l1"`` or ``"mse"``.

    Returns:
        the distance of each sample, averaged over its non-batch dimensions, in fp32.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")
    difference = (student - teacher.detach()).flatten(1).float()
    return difference.abs().mean(dim=1) if kind == "l1" else difference.square().mean(dim=1)


def lkd_loss(teacher_latent: Tensor, student_latent: Tensor, kind: str = "mse") -> Tensor:
    """LKD (eq. 12): ``L_r(t(x), s(x))`` on the final latents.

    Args:
        teacher_latent: the teacher's final latents, shape ``(batch, ...)``.
        student_latent: the student's, of the same shape.
        kind: ``"mse"`` or ``"l1"``.

    Returns:
        the batch mean of the per-sample distance (a scalar).
    """
    return distance(teacher_latent, student_latent, kind).mean()


def ilkd_loss(teacher: Sequence[Tensor], student: Sequence[Tensor], kind: str = "mse") -> Tensor:
    """ILKD (eq. 13): the distances of the matched pairs, summed and divided by the number of pairs (the authors'
    code; the paper's sum without the division is this times the number of pairs).

    Args:
        teacher: the teacher's intermediates of the matched pairs, each ``(batch, ...)``.
        student: the student's, in the same order and of the same shapes.
        kind: ``"mse"`` or ``"l1"``.

    Returns:
        the batch mean of the per-sample mean over pairs (a scalar).

    Raises:
        ValueError: the lists differ in length or are empty, or an unknown ``kind``.
    """
    if len(teacher) != len(student) or not teacher:
        raise ValueError(f"ILKD needs matched, non-empty lists, got {len(teacher)} and {len(student)} latents")
    total = sum(distance(t, s, kind) for t, s in zip(teacher, student))
    return (total / len(teacher)).mean()


def skd_loss(teacher_samples: Tensor, student_samples: Tensor, kind: str = "l1") -> Tensor:
    """SKD (eq. 14): ``L_r(t^-1(z), s^-1(z))`` of the two models' decodings of the same latents; a sample whose
    distance is not finite contributes 0, as in the authors' code (an unaligned student can diverge on a few).

    Args:
        teacher_samples: the teacher's decodings, shape ``(batch, *data_shape)``.
        student_samples: the student's decodings of the same latents, of the same shape.
        kind: ``"l1"`` or ``"mse"``.

    Returns:
        the batch mean of the per-sample distance, non-finite ones counted as 0 (a scalar).
    """
    per_sample = distance(teacher_samples, student_samples, kind)
    return torch.where(torch.isfinite(per_sample), per_sample, torch.zeros_like(per_sample)).mean()
