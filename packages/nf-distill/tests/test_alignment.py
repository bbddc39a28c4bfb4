"""The alignment rule: student boundary j of a level -> teacher boundary round(j * K_t / K_s)."""

from __future__ import annotations

import pytest

from nfkit_distill import DistillationMismatchError, align, teacher_boundary


@pytest.mark.parametrize(("teacher", "student", "expected"), [
    (8, 2, [4, 8]),
    (6, 3, [2, 4, 6]),
    (8, 3, [3, 5, 8]),   # 2.67 -> 3, 5.33 -> 5
    (5, 2, [3, 5]),      # 2.5 rounds up
    (4, 4, [1, 2, 3, 4]),
    (7, 1, [7]),
    (2, 4, [1, 1, 2, 2]),  # a deeper student: 0.5 -> 1, 1.5 -> 2
])
def test_teacher_boundary(teacher, student, expected):
    assert [teacher_boundary(j, teacher, student) for j in range(1, student + 1)] == expected


def test_align_pairs_level_by_level_and_always_the_final_latent():
    teacher = [[f"t0.{k}" for k in range(8)], [f"t1.{k}" for k in range(8)]]
    student = [["s0.0", "s0.1"], ["s1.0", "s1.1"]]
    pairs = align(teacher, student)
    assert [(p.level, p.student, p.teacher) for p in pairs] == [
        (0, "s0.0", "t0.3"), (0, "s0.1", "t0.7"), (1, "s1.0", "t1.3"), (1, "s1.1", "t1.7")]
    (final,) = align(teacher, student, final_only=True)
    assert (final.student, final.teacher) == ("s1.1", "t1.7")


def test_different_level_counts_are_refused():
    with pytest.raises(DistillationMismatchError, match="teacher has 3 levels and the student 2"):
        align([["a"], ["b"], ["c"]], [["a"], ["b"]])
