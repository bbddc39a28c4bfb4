"""The distillation experiment shared by ``distill_digits.py`` and ``distill_tabular.py``: the runs, the table, the
command line.

A :class:`Setting` is one teacher-student comparison. Its teacher is trained by likelihood for each candidate length
(``--teacher-steps``, a comma-separated list) and the candidate with the best *validation* score is kept. Its
students' length (``--steps``, also a list) is chosen the same way, by the likelihood-only arm: the candidate with the
best validation score for the first seed; every arm then trains for that many steps. For every seed, a student of
the setting's architecture and data is trained once per arm with the same steps, optimizer, schedule and seed:
``nll`` (likelihood only), ``lkd``, ``ilkd`` and ``ilkd+skd`` (warm-started: ILKD for the first half of the steps,
then ILKD+SKD, as the paper advises). Every run is an ordinary nf run folder; the test numbers are collected into a
Markdown table with the mean and standard error over seeds, the share of the teacher-student gap closed, and the
paired wins over the likelihood-only student. The test split is read only for the table: every choice above is made
on the validation split.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import Stamp, make_parser, parse_args, write_report

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.train import Trainer, make_run_config
from nfkit_distill import DistillTrainer

ARMS = ("nll", "lkd", "ilkd", "ilkd+skd")

Score = Callable[[Mapping[str, Any], str], float]
"""A run's score on a split (``"val"`` or ``"test"``) from its ``report.json``."""
Extra = Callable[[Path, Path], dict[str, float]]
"""Further test metrics of a run folder (second argument: a cache folder shared by the runs), by column name."""


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


def _fit(trainer: Trainer) -> dict[str, Any]:
    try:
        return trainer.fit()
    finally:
        trainer.close()


def _report(out: Path) -> dict[str, Any] | None:
    return json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else None


def train_teacher(out: Path, setting: Setting, steps: int) -> dict[str, Any]:
    """Train one teacher candidate into ``out`` (or read its report if it is already there)."""
    report = _report(out)
    if report is not None:
        return report
    run = make_run_config(setting.arch, setting.dataset, model=setting.teacher, data=setting.data,
                          train={**setting.train, "steps": steps, "seed": 1000, "checkpoint_every": steps})
    return _fit(Trainer(run, out))


def train_student(out: Path, setting: Setting, arm: str, teacher: Path, steps: int, seed: int) -> dict[str, Any]:
    """One student run of ``arm`` (see the module docstring)."""
    report = _report(out)
    if report is not None:
        return report
    run = make_run_config(setting.arch, setting.dataset, model=setting.student, data=setting.data,
                          train={**setting.train, "steps": steps, "seed": seed, "checkpoint_every": steps})
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


@torch.no_grad()
def sampling_latency(runs: Mapping[str, Path], batch: int, rounds: int = 5) -> dict[str, float]:
    """Seconds to draw one batch of ``batch`` samples from each run's flow, taking turns, best of ``rounds``."""
    flows = {name: load_checkpoint(path) for name, path in runs.items()}
    best = dict.fromkeys(flows, math.inf)
    for flow in flows.values():  # warm-up
        flow.sample(batch, generator=torch.Generator().manual_seed(0))
    for round_ in range(rounds):
        for name in (list(flows) if round_ % 2 == 0 else list(reversed(flows))):
            start = time.perf_counter()
            flows[name].sample(batch, generator=torch.Generator().manual_seed(round_))
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def table(results: Mapping[str, list[float]], teacher: float, unit: str, higher_is_better: bool,
          params: Mapping[str, int], latency: Mapping[str, float],
          extra: Mapping[str, Mapping[str, list[float]]] | None = None) -> str:
    """The Markdown table: per arm mean +- s.e., share of the gap closed (the share of the mean gap, and the mean over
    seeds of the paired share), paired wins over ``nll``, ``extra`` columns (``{column: {arm or "teacher": values}}``,
    mean +- s.e.), parameters and sampling latency."""
    extra = extra or {}
    sign = 1.0 if higher_is_better else -1.0
    baseline = results["nll"]

    def extras(arm: str) -> str:
        cells = []
        for column in extra.values():
            values = column.get(arm, [])
            cells.append("" if not values else f"{mean_se(values)[0]:.4f}" if len(values) == 1 else
                         "{:.4f} +- {:.4f}".format(*mean_se(values)))
        return "".join(f" {cell} |" for cell in cells)

    head = (f"| arm | test {unit} (mean +- s.e.) | gap closed | gap closed +- s.e. (per seed) | wins vs nll |"
            + "".join(f" {name} |" for name in extra) + " params | sampling latency (s / batch) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines.append(f"| teacher | {teacher:.4f} | 100% | | |{extras('teacher')} {params['teacher']} | "
                 f"{latency['teacher']:.4f} |")
    gap = sign * (teacher - statistics.fmean(baseline))
    for arm, values in results.items():
        mean, se = mean_se(values)
        closed = sign * (mean - statistics.fmean(baseline)) / gap if gap else float("nan")
        per_seed = [sign * (v - b) / (sign * (teacher - b)) for v, b in zip(values, baseline)]
        wins = sum(sign * (v - b) > 0 for v, b in zip(values, baseline))
        paired = "" if arm == "nll" else "{:.1%} +- {:.1%}".format(*mean_se(per_seed))
        lines.append(f"| {arm} | {mean:.4f} +- {se:.4f} | {closed:.1%} | {paired} | "
                     f"{'' if arm == 'nll' else f'{wins}/{len(values)}'} |{extras(arm)} {params['student']} | "
                     f"{latency['student']:.4f} |")
    return "\n".join(lines) + "\n"


def best_by_validation(candidates: Mapping[int, float], higher_is_better: bool) -> int:
    """The candidate (a step count) with the best validation score."""
    return (max if higher_is_better else min)(candidates, key=candidates.__getitem__)


def run_setting(setting: Setting, root: Path, teacher_steps: Sequence[int], steps: Sequence[int],
                seeds: Sequence[int], latency_batch: int, table_only: bool = True) -> str:
    """Train (or read) every run of ``setting`` and return its section of the report (``table_only=False``: only
    train, for a process that runs some of the seeds)."""
    s, better = setting, setting.higher_is_better
    teachers = {n: train_teacher(root / f"{s.name}-teacher-{n}steps", s, n) for n in teacher_steps}
    chosen = best_by_validation({n: s.score(r, "val") for n, r in teachers.items()}, better)
    teacher_dir, teacher = root / f"{s.name}-teacher-{chosen}steps", teachers[chosen]

    def student(arm: str, n: int, seed: int) -> dict[str, Any]:
        report = train_student(root / f"{s.name}-{arm}-{n}steps-seed{seed}", s, arm, teacher_dir, n, seed)
        print(f"{s.name} {arm} {n} steps seed {seed}: test {s.score(report, 'test'):.4f} {s.unit}", flush=True)
        return report

    nll_val = {n: s.score(student("nll", n, seeds[0]), "val") for n in steps}
    n = best_by_validation(nll_val, better)
    reports = {(arm, seed): student(arm, n, seed) for seed in seeds for arm in s.arms}
    if not table_only:
        return ""
    results = {arm: [s.score(reports[arm, seed], "test") for seed in seeds] for arm in s.arms}
    extra: dict[str, dict[str, list[float]]] = {}
    if s.extra is not None:
        cache = root / f"{s.name}-eval-cache"
        for key, folder in [("teacher", teacher_dir)] + [
                ((arm, seed), root / f"{s.name}-{arm}-{n}steps-seed{seed}") for seed in seeds for arm in s.arms]:
            for column, value in s.extra(folder, cache).items():
                extra.setdefault(column, {}).setdefault(key if key == "teacher" else key[0], []).append(value)
    latency = sampling_latency({"teacher": teacher_dir, "student": root / f"{s.name}-nll-{n}steps-seed{seeds[0]}"},
                               batch=latency_batch)
    params = {"teacher": teacher["parameters"], "student": reports["nll", seeds[0]]["parameters"]}
    text = (f"Teacher: {chosen} steps, chosen by validation among "
            + ", ".join(f"{m} steps ({s.score(r, 'val'):.4f})" for m, r in teachers.items())
            + f". Students: {n} steps, the length at which the likelihood-only arm's validation {s.unit} (seed "
            f"{seeds[0]}) was best among " + ", ".join(f"{m} ({v:.4f})" for m, v in nll_val.items()) + ".\n\n")
    text += table(results, s.score(teacher, "test"), s.unit, better, params, latency, extra)
    sign = 1.0 if better else -1.0
    margin = {split: sign * (s.score(teacher, split) - statistics.fmean(s.score(reports["nll", seed], split)
                                                                          for seed in seeds))
              for split in ("test", "val")}
    text += (f"\nTeacher: test {s.score(teacher, 'test'):.4f}, validation {s.score(teacher, 'val'):.4f} {s.unit}; "
             f"held-out margin over the likelihood-only student: {margin['test']:.4f} {s.unit} on test, "
             f"{margin['val']:.4f} on validation.\n")
    (root / f"{s.name}-results.json").write_text(json.dumps(
        {"results": results, "extra": extra, "teacher": teacher, "teacher_steps": chosen, "steps": n}, indent=2))
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
    parser = make_parser(doc.split("\n\n")[0])
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
    stamp = Stamp(title, args, timing=f"sampling latency: best of 5 alternating rounds of sampling {latency_batch} "
                                      f"per model (wall-clock, on a shared machine)")
    chosen = settings(args)
    sections = []
    for setting in chosen:
        text = run_setting(setting, args.root, args.teacher_steps, args.steps, seeds, latency_batch,
                           table_only=args.only_seed is None)
        train = setting.train
        sections += ["", f"## {setting.name}", "",
                     f"Every run: batch {train['batch_size']}, AdamW lr {train['lr']:g} ({train['warmup_steps']} "
                     f"warm-up steps, cosine), {train['precision']}; students' seeds {seeds}, teachers' seed 1000. "
                     f"Distiller options: {json.dumps(setting.options)}.", "", text]
    if args.only_seed is None:
        write_report(args.output, "\n".join([stamp.render(), *sections]))
