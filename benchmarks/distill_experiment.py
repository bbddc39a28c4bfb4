"""The distillation experiment shared by ``distill_digits.py`` and ``distill_tabular.py``: the runs, the table, the
command line.

A :class:`Setting` is one teacher-student comparison. Its teacher is trained by likelihood for each candidate length
(``--teacher-steps``, a comma-separated list) and the candidate with the best *validation* score is kept. Its
students' length (``--steps``, also a list) is chosen the same way, by the likelihood-only arm: the candidate with the
best validation score for the first seed; every arm then trains for that many steps. For every seed, a student of
the setting's architecture and data is trained once per arm with the same steps, optimizer, schedule and seed:
``nll`` (likelihood only), ``lkd``, ``ilkd`` and ``ilkd+skd`` (warm-started: ILKD for the first half of the steps,
then ILKD+SKD, as the paper advises). A setting may add one arm beyond the paper (:class:`TunedArm`): one of these
with a training option chosen among candidates by the validation score of the first seed. Every run is an ordinary nf
run folder; the test numbers are collected into a Markdown table with the mean and standard error over seeds, the
share of the teacher-student gap closed, and the paired wins over the likelihood-only student. A run the trainer
stopped on a non-finite loss has diverged: it has no score (its checkpoint, from before the divergence, is never
scored in its place), its arm's mean is over the seeds that finished, and it counts as a loss in the paired wins.
The test split is read only for the table: every choice above is made on the validation split.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import Stamp, Timings, make_parser, parse_args, time_in_processes, time_variants, write_report

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.train import NonFiniteLossError, RunConfig, Trainer, make_run_config
from nfkit_core.train.metrics import read_metrics
from nfkit_distill import DistillTrainer

ARMS = ("nll", "lkd", "ilkd", "ilkd+skd")
LATENCY_SAMPLES = 15
LATENCY_SAMPLE_SECONDS = 3.0
"""The sampling latency's default timing: 15 alternating rounds of 3 s samples (``--samples``, ``--sample-seconds``)."""

Score = Callable[[Mapping[str, Any], str], float]
"""A run's score on a split (``"val"`` or ``"test"``) from its ``report.json``."""
Extra = Callable[[Path, Path], dict[str, float]]
"""Further test metrics of a run folder (second argument: a cache folder shared by the runs), by column name."""


@dataclass(frozen=True)
class Diverged:
    """A run that the trainer stopped on a non-finite loss, at ``step``: it has no result."""

    step: int

    def __str__(self) -> str:
        return f"diverged at step {self.step}"


Outcome = dict[str, Any] | Diverged
"""A run's ``report.json``, or :class:`Diverged`."""


@dataclass(frozen=True)
class TunedArm:
    """An arm beyond the paper: the arm ``base`` with the training option ``option`` (e.g. ``grad_clip``), whose value
    is chosen among ``candidates`` by the validation score of the first seed; the chosen one runs for every seed. A
    candidate that diverges on the first seed is never chosen; if every one does, the arm is not run further (and
    the report says so)."""

    name: str
    base: str
    option: str
    candidates: tuple[float, ...]

    def arm(self, value: float) -> str:
        """The arm (and run folder) name of one candidate, e.g. ``ilkd+skd-clip1``."""
        return f"{self.name}{value:g}"

    def choose(self, validation: Mapping[float, float | Diverged], higher_is_better: bool) -> float | None:
        """The candidate with the best validation score (first seed), ``None`` if every candidate diverged."""
        if all(isinstance(score, Diverged) for score in validation.values()):
            return None
        return best_by_validation(validation, higher_is_better)


@dataclass
class Setting:
    """One teacher-student comparison.

    Attributes:
        name: the section's name and the run folders' prefix.
        arch, dataset, data: architecture (teacher's and student's), dataset and its options.
        teacher, student: model options.
        train: training options of teacher and students alike (batch, optimizer, logging); steps and seed are set
            per run.
        options: the distillers' options, by arm (``ilkd+skd`` also takes ``ilkd``'s for its warm start).
        score: the number compared, from a report and a split; ``unit`` names it.
        higher_is_better: whether a larger score is better (log-likelihood) or worse (bits/dim).
        arms: the arms run; ``nll`` first.
        extra: further test metrics per run (columns of the table, e.g. FD and KID), or ``None``.
        tuned: an arm beyond the paper, or ``None``.
    """

    name: str
    arch: str
    dataset: str
    teacher: dict[str, Any]
    student: dict[str, Any]
    train: dict[str, Any]
    options: dict[str, dict[str, Any]]
    score: Score
    unit: str
    higher_is_better: bool
    data: dict[str, Any] = field(default_factory=dict)
    arms: tuple[str, ...] = ARMS
    extra: Extra | None = None
    tuned: TunedArm | None = None


def _fit(trainer: Trainer) -> dict[str, Any]:
    try:
        return trainer.fit()
    finally:
        trainer.close()


def _report(out: Path) -> dict[str, Any] | None:
    return json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else None


def diverged_at(out: Path) -> int | None:
    """The step at which the run in ``out`` stopped on a non-finite loss (the trainer's ``non-finite loss`` event in
    its ``metrics.jsonl``), or ``None``."""
    if not (out / "metrics.jsonl").is_file():
        return None
    rows, _ = read_metrics(out / "metrics.jsonl")
    return next((row["step"] for row in rows if row.get("event") == "non-finite loss"), None)


def _score(setting: Setting, outcome: Outcome, split: str) -> float | Diverged:
    return outcome if isinstance(outcome, Diverged) else setting.score(outcome, split)


def _shown(value: float | Diverged) -> str:
    return str(value) if isinstance(value, Diverged) else f"{value:.4f}"


def train_teacher(out: Path, setting: Setting, steps: int) -> dict[str, Any]:
    """Train one teacher candidate into ``out`` (or read its report if it is already there)."""
    report = _report(out)
    if report is not None:
        return report
    run = make_run_config(setting.arch, setting.dataset, model=setting.teacher, data=setting.data,
                          train={**setting.train, "steps": steps, "seed": 1000, "checkpoint_every": steps})
    return _fit(Trainer(run, out))


def train_student(out: Path, setting: Setting, arm: str, teacher: Path, steps: int, seed: int,
                  train: Mapping[str, Any] | None = None) -> Outcome:
    """One student run of ``arm`` (one of :data:`ARMS`; see the module docstring) with the training options ``train``
    changed from the setting's, or the outcome of the run already in ``out``."""
    report = _report(out)
    if report is not None:
        return report
    if (step := diverged_at(out)) is not None:
        return Diverged(step)
    run = make_run_config(setting.arch, setting.dataset, model=setting.student, data=setting.data,
                          train={**setting.train, **(train or {}), "steps": steps, "seed": seed,
                                 "checkpoint_every": steps})
    try:
        return _train_student(out, setting, arm, teacher, steps, run)
    except NonFiniteLossError:
        if (step := diverged_at(out)) is None:
            raise
        return Diverged(step)


def _train_student(out: Path, setting: Setting, arm: str, teacher: Path, steps: int, run: RunConfig
                   ) -> dict[str, Any]:
    if arm == "nll":
        return _fit(Trainer(run, out))
    options = setting.options
    if arm != "ilkd+skd":
        return _fit(DistillTrainer(run, out, teacher=teacher, distiller=arm, options=dict(options.get(arm, {}))))
    trainer = DistillTrainer(run, out, teacher=teacher, distiller="ilkd", options=dict(options.get("ilkd", {})))
    try:
        trainer.fit(until=steps // 2)
        trainer.use_distiller("ilkd+skd", dict(options.get("ilkd+skd", {})))
        return trainer.fit()
    finally:
        trainer.close()


def measure_latency(args: argparse.Namespace) -> Timings:
    """Seconds to draw one batch of ``args.latency_batch`` samples from each flow of ``args.latency_runs`` (name ->
    run folder), taking turns with the shared timing method: what each of :func:`sampling_latency`'s processes
    runs."""
    flows = {name: load_checkpoint(path) for name, path in args.latency_runs.items()}

    def sampler(flow: torch.nn.Module) -> Callable[[], None]:
        @torch.no_grad()
        def sample() -> None:
            flow.sample(args.latency_batch, generator=torch.Generator().manual_seed(0))
        return sample

    return time_variants({name: sampler(flow) for name, flow in flows.items()}, args)


def sampling_latency(runs: Mapping[str, Path], batch: int, args: argparse.Namespace) -> Timings:
    """The sampling latency of a batch of ``batch`` from each run's flow (name -> run folder), timed as every
    benchmark is (:func:`common.time_in_processes`, with the timing options of the command line)."""
    return time_in_processes(measure_latency, argparse.Namespace(**vars(args), latency_runs=dict(runs),
                                                                 latency_batch=batch))


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class ArmSummary:
    """One arm's test scores over the seeds, against the likelihood-only arm of the same seeds.

    Attributes:
        seeds: how many seeds were run; finished: how many of those runs finished (the others diverged).
        mean, se: mean and standard error over the finished seeds (NaN if none finished).
        paired: the seeds where both this arm and the baseline finished.
        gap_closed: over those seeds, the share of the mean teacher-baseline gap that the arm's mean closes (NaN
            without such a seed).
        per_seed_gap: mean and standard error of the share of the gap closed seed by seed, over the same seeds.
        wins, compared: the seeds where the arm beat the baseline, out of those where the baseline finished (a seed
            where the arm diverged is a loss).
    """

    seeds: int
    finished: int
    mean: float
    se: float
    paired: int
    gap_closed: float
    per_seed_gap: tuple[float, float]
    wins: int
    compared: int


def summarize(values: Sequence[float | Diverged], baseline: Sequence[float | Diverged], teacher: float,
              higher_is_better: bool) -> ArmSummary:
    """Summarize one arm's per-seed test scores (``values``) against the baseline's (``baseline``, the same seeds in
    the same order) and the teacher's score."""
    sign = 1.0 if higher_is_better else -1.0
    finished = [v for v in values if not isinstance(v, Diverged)]
    compared = [(v, b) for v, b in zip(values, baseline, strict=True) if not isinstance(b, Diverged)]
    paired = [(v, b) for v, b in compared if not isinstance(v, Diverged)]
    mean, se = mean_se(finished) if finished else (math.nan, math.nan)
    closed, per_seed = math.nan, (math.nan, math.nan)
    if paired:
        arm_mean, base_mean = statistics.fmean(v for v, _ in paired), statistics.fmean(b for _, b in paired)
        closed = (arm_mean - base_mean) / (teacher - base_mean) if teacher != base_mean else math.nan
        per_seed = mean_se([(v - b) / (teacher - b) for v, b in paired])
    wins = sum(sign * (v - b) > 0 for v, b in paired)
    return ArmSummary(len(values), len(finished), mean, se, len(paired), closed, per_seed, wins, len(compared))


def table(results: Mapping[str, Sequence[float | Diverged]], teacher: float, unit: str, higher_is_better: bool,
          params: Mapping[str, int], latency: Timings,
          extra: Mapping[str, Mapping[str, list[float]]] | None = None) -> str:
    """The Markdown table: per arm mean +- s.e. over the seeds that finished ("k/n finished" when some diverged; the
    value alone when one did), share of the gap closed (the share of the mean gap, and the mean over seeds of the
    paired share), paired wins over ``nll`` (see :func:`summarize`), ``extra`` columns (``{column: {arm or "teacher":
    values}}``, mean +- s.e.), parameters and sampling latency (the ``teacher`` and ``student`` variants of
    ``latency``: median seconds per batch with their range), then the student's sampling speed-up."""
    extra = extra or {}

    def cell(values: Sequence[float], digits: int = 4) -> str:
        if not values:
            return ""
        mean, se = mean_se(values)
        return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} +- {se:.{digits}f}"

    def extras(arm: str) -> str:
        return "".join(f" {cell(column.get(arm, []))} |" for column in extra.values())

    head = (f"| arm | test {unit} (mean +- s.e.) | gap closed | gap closed +- s.e. (per seed) | wins vs nll |"
            + "".join(f" {name} |" for name in extra) + " params | sampling latency (s / batch) |")
    seconds = {name: latency[name].spread.format(3) for name in ("teacher", "student")}
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines.append(f"| teacher | {teacher:.4f} | 100% | | |{extras('teacher')} {params['teacher']} | "
                 f"{seconds['teacher']} |")
    for arm, values in results.items():
        s = summarize(values, results["nll"], teacher, higher_is_better)
        score = f"{s.mean:.4f} +- {s.se:.4f}" if s.finished > 1 else f"{s.mean:.4f}"
        if s.finished < s.seeds:
            score = f"{score} ({s.finished}/{s.seeds} finished)" if s.finished else f"0/{s.seeds} finished"
        closed = "0%" if arm == "nll" else "" if math.isnan(s.gap_closed) else f"{s.gap_closed:.1%}"
        paired = ("" if arm == "nll" or not s.paired else f"{s.per_seed_gap[0]:.1%}" if s.paired == 1 else
                  "{:.1%} +- {:.1%}".format(*s.per_seed_gap))
        wins = "" if arm == "nll" else f"{s.wins}/{s.compared}"
        lines.append(f"| {arm} | {score} | {closed} | {paired} | {wins} |{extras(arm)} {params['student']} | "
                     f"{seconds['student']} |")
    speedup = latency.speedup("student", "teacher").format(3, "x")
    return "\n".join(lines) + f"\n\nThe student samples {speedup} as fast as the teacher (median, per-round range).\n"


def seed_table(results: Mapping[str, Sequence[float | Diverged]], seeds: Sequence[int], unit: str) -> str:
    """The test score of every run, a row per seed ("diverged at step N" for a run that diverged)."""
    lines = ["| seed |" + "".join(f" {arm} |" for arm in results), "|" + "---|" * (len(results) + 1)]
    for i, seed in enumerate(seeds):
        lines.append(f"| {seed} |" + "".join(f" {_shown(values[i])} |" for values in results.values()))
    return f"Test {unit} of every run:\n\n" + "\n".join(lines) + "\n"


def best_by_validation(candidates: Mapping[Any, float | Diverged], higher_is_better: bool) -> Any:
    """The candidate (a step count, an option's value) with the best validation score; a candidate that diverged is
    never the best (an error if all did)."""
    finished = {key: value for key, value in candidates.items() if not isinstance(value, Diverged)}
    if not finished:
        raise RuntimeError(f"every candidate diverged: {', '.join(f'{k}: {v}' for k, v in candidates.items())}")
    return (max if higher_is_better else min)(finished, key=finished.__getitem__)


def run_setting(setting: Setting, root: Path, teacher_steps: Sequence[int], steps: Sequence[int],
                seeds: Sequence[int], latency_batch: int, args: argparse.Namespace, table_only: bool = True,
                first_seed: int = 0) -> str:
    """Train (or read) every run of ``setting`` and return its section of the report (``table_only=False``: only
    train, for a process that runs some of the seeds). Choices by validation use ``first_seed``'s runs; the sampling
    latency is timed with the timing options of ``args``."""
    s, better = setting, setting.higher_is_better
    teachers = {n: train_teacher(root / f"{s.name}-teacher-{n}steps", s, n) for n in teacher_steps}
    chosen = best_by_validation({n: s.score(r, "val") for n, r in teachers.items()}, better)
    teacher_dir, teacher = root / f"{s.name}-teacher-{chosen}steps", teachers[chosen]
    variants: dict[str, tuple[str, dict[str, Any]]] = {arm: (arm, {}) for arm in s.arms}
    if s.tuned is not None:
        variants |= {s.tuned.arm(c): (s.tuned.base, {s.tuned.option: c}) for c in s.tuned.candidates}

    def folder(arm: str, n: int, seed: int) -> Path:
        return root / f"{s.name}-{arm}-{n}steps-seed{seed}"

    def student(arm: str, n: int, seed: int) -> Outcome:
        base, train = variants[arm]
        outcome = train_student(folder(arm, n, seed), s, base, teacher_dir, n, seed, train)
        test = _score(s, outcome, "test")
        print(f"{s.name} {arm} {n} steps seed {seed}: "
              + (str(test) if isinstance(test, Diverged) else f"test {test:.4f} {s.unit}"), flush=True)
        return outcome

    nll_val = {m: _score(s, student("nll", m, first_seed), "val") for m in steps}
    n = best_by_validation(nll_val, better)
    arms = s.arms
    if s.tuned is not None:
        tuned_val = {c: _score(s, student(s.tuned.arm(c), n, first_seed), "val") for c in s.tuned.candidates}
        if (value := s.tuned.choose(tuned_val, better)) is not None:
            arms = (*arms, s.tuned.arm(value))
    reports = {(arm, seed): student(arm, n, seed) for seed in seeds for arm in arms}
    if not table_only:
        return ""
    results = {arm: [_score(s, reports[arm, seed], "test") for seed in seeds] for arm in arms}
    extra: dict[str, dict[str, list[float]]] = {}
    if s.extra is not None:
        cache = root / f"{s.name}-eval-cache"
        for key, path in [("teacher", teacher_dir)] + [(arm, folder(arm, n, seed)) for seed in seeds for arm in arms
                                                       if not isinstance(reports[arm, seed], Diverged)]:
            for column, value in s.extra(path, cache).items():
                extra.setdefault(column, {}).setdefault(key, []).append(value)
    latency = sampling_latency({"teacher": teacher_dir, "student": folder("nll", n, seeds[0])}, latency_batch, args)
    params = {"teacher": teacher["parameters"], "student": reports["nll", seeds[0]]["parameters"]}
    text = (f"Teacher: {chosen} steps, chosen by validation among "
            + ", ".join(f"{m} steps ({s.score(r, 'val'):.4f})" for m, r in teachers.items())
            + f". Students: {n} steps, the length at which the likelihood-only arm's validation {s.unit} (seed "
            f"{first_seed}) was best among " + ", ".join(f"{m} ({_shown(v)})" for m, v in nll_val.items()) + ".\n\n")
    if s.tuned is not None:
        candidates = ", ".join(f"{c:g} ({_shown(v)})" for c, v in tuned_val.items())
        if arms[-1] in s.arms:
            text += (f"Beyond the paper: {s.tuned.base} with train.{s.tuned.option} among {candidates}: every "
                     f"candidate diverged on seed {first_seed}, so no such arm was run for the other seeds.\n\n")
        else:
            text += (f"Beyond the paper: `{arms[-1]}` is {s.tuned.base} with train.{s.tuned.option} = "
                     f"{variants[arms[-1]][1][s.tuned.option]:g}, chosen by the validation {s.unit} of seed "
                     f"{first_seed} among {candidates}.\n\n")
    text += table(results, s.score(teacher, "test"), s.unit, better, params, latency, extra)
    diverged = [f"{arm} seed {seed} at step {reports[arm, seed].step}" for arm in arms for seed in seeds
                if isinstance(reports[arm, seed], Diverged)]
    if diverged:
        text += ("\nDiverged (the trainer stopped on a non-finite loss; such a run has no score, and the checkpoint "
                 "it kept from before the divergence is not scored in its place): " + "; ".join(diverged) + ".\n")
    text += "\n" + seed_table(results, seeds, s.unit)
    sign = 1.0 if better else -1.0
    baseline = [reports["nll", seed] for seed in seeds if not isinstance(reports["nll", seed], Diverged)]
    margin = {split: sign * (s.score(teacher, split) - statistics.fmean(s.score(r, split) for r in baseline))
              for split in ("test", "val")}
    text += (f"\nTeacher: test {s.score(teacher, 'test'):.4f}, validation {s.score(teacher, 'val'):.4f} {s.unit}; "
             f"held-out margin over the likelihood-only student: {margin['test']:.4f} {s.unit} on test, "
             f"{margin['val']:.4f} on validation.\n")
    (root / f"{s.name}-results.json").write_text(json.dumps(
        {"results": {arm: [v if isinstance(v, float) else None for v in values] for arm, values in results.items()},
         "diverged": {arm: {str(seed): reports[arm, seed].step for seed in seeds
                            if isinstance(reports[arm, seed], Diverged)} for arm in arms},
         "seeds": list(seeds), "extra": extra, "teacher": teacher, "teacher_steps": chosen, "steps": n}, indent=2))
    return text


def int_list(text: str) -> list[int]:
    """``"200,400"`` -> ``[200, 400]`` (an argparse type)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main(doc: str, title: str, settings: Callable[[argparse.Namespace], list[Setting]], *, root: Path,
         teacher_steps: str, steps: str, latency_batch: int,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """The command line of a distillation script: ``doc`` is its docstring; ``settings(args)`` its comparisons;
    the other arguments are defaults."""
    parser = make_parser(doc.split("\n\n")[0], memory=False)
    # Sampling two small models takes milliseconds: longer rounds let each process span the drift between minutes,
    # which nine 1 s rounds (twenty seconds a process) did not (benchmarks/results/reproducibility.md).
    parser.set_defaults(samples=LATENCY_SAMPLES, sample_seconds=LATENCY_SAMPLE_SECONDS)
    parser.add_argument("--root", type=Path, default=root, help="folder for the runs (default: %(default)s)")
    parser.add_argument("--teacher-steps", type=int_list, default=teacher_steps,
                        help="the teacher's candidate lengths, the best on validation is kept (default: %(default)s)")
    parser.add_argument("--steps", type=int_list, default=steps,
                        help="the students' candidate lengths; the one at which the likelihood-only arm (first seed) "
                             "is best on validation is used by every arm (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="students' seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--only-seed", type=int, default=None,
                        help="only train this seed's runs (processes for different seeds can share --root); a run "
                             "without it over the finished runs writes the table")
    if add_arguments is not None:
        add_arguments(parser)
    args = parse_args(parser)
    if args.tiny:  # a smoke run of the whole pipeline
        args.teacher_steps, args.steps, args.seeds = [3], [2], 2
    seeds = list(range(args.seeds)) if args.only_seed is None else [args.only_seed]
    stamp = Stamp(title, args)
    chosen = settings(args)
    sections = []
    for setting in chosen:
        text = run_setting(setting, args.root, args.teacher_steps, args.steps, seeds, latency_batch, args,
                           table_only=args.only_seed is None, first_seed=0)
        train = setting.train
        sections += ["", f"## {setting.name}", "",
                     f"Every run: batch {train['batch_size']}, AdamW lr {train['lr']:g} ({train['warmup_steps']} "
                     f"warm-up steps, cosine), {train['precision']}; students' seeds {seeds}, teachers' seed 1000. "
                     f"Distiller options: {json.dumps(setting.options)}.", "", text]
    if args.only_seed is None:
        timed = (f"timed: the sampling latency of one batch of {latency_batch} from each setting's teacher and from "
                 "its likelihood-only student of seed 0 (the runs' training is not timed)")
        write_report(args.output, "\n".join([stamp.render([timed]), *sections]))
