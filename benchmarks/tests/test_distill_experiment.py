"""The distillation experiment's bookkeeping: a diverged run is read as such (never retrained, never scored from the
checkpoint it kept), and the table's means, gap closed and paired wins count it as the module docstring says."""

from __future__ import annotations

import json
import math

import pytest
from common import Timing, Timings
from distill_experiment import (
    Diverged,
    TunedArm,
    best_by_validation,
    diverged_at,
    seed_table,
    summarize,
    table,
    train_student,
)

TEACHER = 2.30  # bits/dim: lower is better
NLL = [2.70, 2.75, 2.65, 2.60, 2.68]
SKD = [2.69, Diverged(511), Diverged(510), 2.62, 2.66]


def test_a_diverged_seed_is_left_out_of_the_mean_and_lost_in_the_paired_wins():
    s = summarize(SKD, NLL, TEACHER, higher_is_better=False)
    # Seeds 0 and 4 won, 3 lost, 1 and 2 diverged (lost).
    assert (s.seeds, s.finished, s.paired, s.wins, s.compared) == (5, 3, 3, 2, 5)
    assert s.mean == pytest.approx((2.69 + 2.62 + 2.66) / 3)
    assert s.se == pytest.approx(0.0202759, abs=1e-7)  # stdev 0.0351188 of the three, over sqrt(3)
    # Against the likelihood-only students of the same seeds (0, 3, 4: mean 2.66), not of all five.
    assert s.gap_closed == pytest.approx((2.656667 - 2.66) / (2.30 - 2.66), abs=1e-6)  # 0.93%
    per_seed = [(2.69 - 2.70) / (2.30 - 2.70), (2.62 - 2.60) / (2.30 - 2.60), (2.66 - 2.68) / (2.30 - 2.68)]
    assert per_seed == pytest.approx([0.025, -0.066667, 0.052632], abs=1e-6)
    assert s.per_seed_gap[0] == pytest.approx(sum(per_seed) / 3)


def test_a_seed_where_the_baseline_diverged_is_not_compared():
    s = summarize([3.0, 5.0, 4.0], [2.0, Diverged(7), 3.5], teacher=6.0, higher_is_better=True)  # log-likelihoods
    assert (s.finished, s.wins, s.compared) == (3, 2, 2)
    assert s.mean == pytest.approx(4.0) and s.gap_closed == pytest.approx((3.5 - 2.75) / (6.0 - 2.75))


def test_an_arm_that_never_finished_has_no_mean_and_no_wins():
    s = summarize([Diverged(3), Diverged(4)], [2.0, 2.1], teacher=1.0, higher_is_better=False)
    assert (s.finished, s.wins, s.compared) == (0, 0, 2)
    assert math.isnan(s.mean) and math.isnan(s.gap_closed)


def test_the_table_states_how_many_seeds_finished_and_the_latency_with_its_spread():
    once = [3.0, *[Diverged(2)] * 4]
    latency = Timings({"teacher": Timing((0.5, 0.6, 0.4), (2, 2, 3)), "student": Timing((0.1, 0.2, 0.1), (9, 5, 9))},
                      ("teacher", "student", "student", "teacher", "teacher", "student"))
    text = table({"nll": NLL, "ilkd+skd": SKD, "once": once, "never": [Diverged(2)] * 5}, TEACHER, "bits/dim", False,
                 {"teacher": 100, "student": 10}, latency)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert rows == [
        "| teacher | 2.3000 | 100% | | | 100 | 0.5 (0.4-0.6) |",
        "| nll | 2.6760 +- 0.0250 | 0% |  |  | 10 | 0.1 (0.1-0.2) |",
        "| ilkd+skd | 2.6567 +- 0.0203 (3/5 finished) | 0.9% | 0.4% +- 3.6% | 2/5 | 10 | 0.1 (0.1-0.2) |",
        "| once | 3.0000 (1/5 finished) | -75.0% | -75.0% | 0/5 | 10 | 0.1 (0.1-0.2) |",  # no s.e. of one seed
        "| never | 0/5 finished |  |  | 0/5 | 10 | 0.1 (0.1-0.2) |",
    ]
    # Median 0.5 s against 0.1 s; the rounds' ratios are 5, 3 and 4.
    assert "The student samples 5x (3-5x) as fast as the teacher" in text
    assert seed_table({"nll": NLL[:2], "ilkd+skd": SKD[:2]}, [0, 1], "bits/dim").splitlines()[2:] == [
        "| seed | nll | ilkd+skd |", "|---|---|---|", "| 0 | 2.7000 | 2.6900 |",
        "| 1 | 2.7500 | diverged at step 511 |"]


def test_a_diverged_candidate_is_never_chosen():
    assert best_by_validation({1: Diverged(5), 10: 2.9, 100: 3.1}, higher_is_better=False) == 10
    with pytest.raises(RuntimeError, match="every candidate diverged: 1: diverged at step 5"):
        best_by_validation({1: Diverged(5)}, higher_is_better=False)
    clipped = TunedArm("ilkd+skd-clip", "ilkd+skd", "grad_clip", (1.0, 10.0))
    assert clipped.arm(10.0) == "ilkd+skd-clip10"
    assert clipped.choose({1.0: Diverged(501), 10.0: 2.8}, higher_is_better=False) == 10.0
    assert clipped.choose({1.0: Diverged(501), 10.0: Diverged(503)}, higher_is_better=False) is None


def test_a_run_that_stopped_on_a_non_finite_loss_is_read_as_diverged_not_retrained(tmp_path):
    out = tmp_path / "glow-ilkd+skd-1000steps-seed1"
    out.mkdir()
    rows = [{"step": 500, "val_bpd": 2.84}, {"step": 511, "event": "non-finite loss", "loss": 622.3, "bpd": 17.1}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (out / "checkpoint.pt").write_bytes(b"the warm start's step-500 checkpoint: never read")
    assert diverged_at(out) == 511 and diverged_at(tmp_path) is None
    # No setting, teacher or data is needed: the folder's outcome is read before anything is built.
    assert train_student(out, None, "ilkd+skd", tmp_path / "no-teacher", 1000, seed=1) == Diverged(511)


def test_a_finished_run_is_read_from_its_report(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"test_bpd": 2.5}))
    assert train_student(tmp_path, None, "nll", tmp_path / "no-teacher", 10, seed=0) == {"test_bpd": 2.5}
