"""Which intermediate latents of a student are matched with which of its teacher.

Every architecture declares the intermediates a distiller may match as ``flow.matchable_intermediates``: a list of
levels, each a list of names of :meth:`nfkit_core.Flow.intermediates` in forward order (Glow and Real NVP: the latent
each level passes on; MAF: every MADE block; TarFlow: every block; DenseFlow: every unit). The last name of the last
level is the flow's final latent, the input of the prior.

The alignment rule (Walton et al., "Distilling Normalizing Flows", section 3): teacher and student have the same
number of levels; within a level of ``K_t`` teacher and ``K_s`` student boundaries, student boundary ``j`` (1-based)
is matched with teacher boundary ``round(j * K_t / K_s)`` (halves rounded up), so the last boundary of every level,
and with it the final latent, is always matched.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nfkit_core import Sequential
from nfkit_core.errors import ConfigError
from nfkit_core.layers import Split

__all__ = ["DistillationMismatchError", "Pair", "matchable_intermediates", "teacher_boundary", "align", "Pairing",
           "capture"]


class DistillationMismatchError(ConfigError):
    """Teacher and student cannot be matched: different level counts or latent shapes."""


@dataclass(frozen=True)
class Pair:
    """One matched pair: the teacher's and the student's intermediate names, and the level they belong to.

    Attributes:
        level: the level, from 0.
        teacher: the name of the teacher's intermediate (one of its ``matchable_intermediates``).
        student: the name of the student's intermediate.
    """

    level: int
    teacher: str
    student: str


def matchable_intermediates(flow: nn.Module, role: str = "flow") -> list[list[str]]:
    """The flow's declared levels of matchable intermediates (see the module docstring).

    Args:
        flow: the teacher or the student.
        role: how messages call it (``"teacher"``, ``"student"``).

    Returns:
        one list of intermediate names per level, in forward order.

    Raises:
        DistillationMismatchError: the flow declares no matchable intermediates, or an empty level.
    """
    levels = getattr(flow, "matchable_intermediates", None)
    if not levels or not all(levels):
        raise DistillationMismatchError(
            f"the {role} ({type(flow).__name__}) declares no matchable intermediates; an architecture supports "
            f"knowledge distillation by setting flow.matchable_intermediates = [[names of level 0], ...]")
    return [list(level) for level in levels]


def teacher_boundary(j: int, teacher_count: int, student_count: int) -> int:
    """The teacher boundary (1-based) matched with student boundary ``j`` of a level: ``round(j * K_t / K_s)``.

    Args:
        j: the student boundary, from 1 to ``student_count``.
        teacher_count: ``K_t``, the teacher's boundaries in the level.
        student_count: ``K_s``, the student's boundaries in the level.

    Returns:
        the teacher boundary, from 1 to ``teacher_count`` (halves rounded up; ``K_t`` for ``j = K_s``).

    Raises:
        ValueError: ``j`` is outside ``1 .. student_count``.
    """
    if not 1 <= j <= student_count:
        raise ValueError(f"student boundary {j} is outside 1..{student_count}")
    return max(1, math.floor(j * teacher_count / student_count + 0.5))


def align(teacher_levels: Sequence[Sequence[str]], student_levels: Sequence[Sequence[str]],
          final_only: bool = False) -> list[Pair]:
    """Pair the student's intermediates with the teacher's by the alignment rule.

    With ``final_only`` only the final latents are paired (LKD).

    Args:
        teacher_levels: the teacher's levels of intermediate names (:func:`matchable_intermediates`).
        student_levels: the student's, with as many levels.
        final_only: pair only the last name of the last level of each.

    Returns:
        one pair per student intermediate (one pair with ``final_only``), level by level in forward order.

    Raises:
        DistillationMismatchError: the two flows have different numbers of levels.
    """
    if len(teacher_levels) != len(student_levels):
        raise DistillationMismatchError(
            f"the teacher has {len(teacher_levels)} levels and the student {len(student_levels)}; distillation "
            f"matches level by level, so give the student as many levels as the teacher")
    if final_only:
        return [Pair(len(student_levels) - 1, teacher_levels[-1][-1], student_levels[-1][-1])]
    pairs = []
    for level, (teacher, student) in enumerate(zip(teacher_levels, student_levels)):
        for j in range(1, len(student) + 1):
            pairs.append(Pair(level, teacher[teacher_boundary(j, len(teacher), len(student)) - 1], student[j - 1]))
    return pairs


def _module(flow: nn.Module, name: str) -> nn.Module:
    """The sub-module of ``flow.transform`` that ``name`` addresses (steps of a Sequential by their step names)."""
    module = flow.transform
    for part in name.split("."):
        children = module.transforms if isinstance(module, Sequential) else dict(module.named_children())
        if part not in children:
            raise DistillationMismatchError(f"{type(flow).__name__} declares intermediate {name!r}, which it does "
                                            f"not have")
        module = children[part]
    return module


@contextlib.contextmanager
def capture(flow: nn.Module, names: Sequence[str], factored_out: bool = False) -> Iterator[dict[str, Tensor]]:
    """Record the named intermediates of every forward pass of ``flow`` made inside the ``with`` block.

    The returned dict fills up as the flow runs; gradients flow through its tensors. With ``factored_out`` a name
    that addresses a factor-out :class:`~nfkit_core.layers.Split` records the split's input (kept and factored-out
    halves) instead of its output (the kept half).

    Args:
        flow: the flow to watch (a :class:`~nfkit_core.NormalizingFlow`).
        names: the intermediates to record, as in ``flow.matchable_intermediates``.
        factored_out: record a factor-out split's input instead of its output.

    Yields:
        name -> the latest recorded intermediate, of shape ``(B, ...)``.

    Raises:
        DistillationMismatchError: ``flow`` has no sub-module of one of the ``names``.
    """
    outputs: dict[str, Tensor] = {}
    handles = []
    for name in dict.fromkeys(names):
        module = _module(flow, name)
        if factored_out and isinstance(module, Split):
            def keep_input(module: nn.Module, args: tuple, name: str = name) -> None:
                outputs[name] = args[0]
            handles.append(module.register_forward_pre_hook(keep_input))
        else:
            def keep_output(module: nn.Module, args: tuple, output: tuple[Tensor, Tensor], name: str = name) -> None:
                outputs[name] = output[0]
            handles.append(module.register_forward_hook(keep_output))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class Pairing:
    """The matched pairs of a teacher and a student, checked on one batch to have equal shapes.

    Attributes:
        pairs: the pairs, level by level in forward order; the last pairs the final latents.
        shapes: the shape of each pair's intermediates without the batch dimension, e.g. ``(C, H, W)``.
    """

    pairs: list[Pair]
    shapes: list[tuple[int, ...]]

    @classmethod
    def check(cls, teacher: nn.Module, student: nn.Module, x: Tensor, context: Tensor | None = None,
              final_only: bool = False, factored_out: bool = False) -> Pairing:
        """Align the declared intermediates and check on the batch ``x`` that every pair has one shape.

        Args:
            teacher: the teacher flow.
            student: the student flow.
            x: a preprocessed batch, shape ``(B, *data_shape)``; both flows run on it once, without gradients.
            context: the conditioning of each example, or ``None``.
            final_only: pair the final latents only (LKD).
            factored_out: compare the inputs of factor-out splits (kept and factored-out halves).

        Returns:
            the checked pairing.

        Raises:
            DistillationMismatchError: different level counts, or a pair (the final latents included) of different
                shapes.
        """
        pairs = align(matchable_intermediates(teacher, "teacher"), matchable_intermediates(student, "student"),
                      final_only)
        with torch.no_grad():
            with capture(teacher, [p.teacher for p in pairs], factored_out) as teacher_out:
                teacher.transform_to_latent(x, context)
            with capture(student, [p.student for p in pairs], factored_out) as student_out:
                student.transform_to_latent(x, context)
        shapes = []
        for index, pair in enumerate(pairs):
            t, s = tuple(teacher_out[pair.teacher].shape[1:]), tuple(student_out[pair.student].shape[1:])
            if t != s and index == len(pairs) - 1:
                raise DistillationMismatchError(f"the teacher's final latent has shape {t}, the student's {s}: they "
                                                f"cannot be matched")
            if t != s:
                raise DistillationMismatchError(
                    f"level {pair.level}: teacher {pair.teacher!r} has shape {t}, student {pair.student!r} {s}; "
                    f"the alignment rule pairs them, so their shapes must agree")
            shapes.append(tuple(s))
        return cls(pairs, shapes)

    def describe(self) -> str:
        """One line per pair, for the start of a run."""
        lines = [f"distillation pairs ({len(self.pairs)}), student <- teacher:"]
        lines += [f"  level {p.level}: {p.student} <- {p.teacher}  {tuple(shape)}"
                  for p, shape in zip(self.pairs, self.shapes)]
        return "\n".join(lines)
