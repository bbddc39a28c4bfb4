"""The distillation experiment shared by ``distill_digits.py`` and ``distill_tabular.py``.

One teacher is trained by likelihood; then, for every seed, a student of the same architecture and data is trained
once per arm with the same steps, optimizer and schedule: ``nll`` (likelihood only), ``lkd``, ``ilkd`` and
``ilkd+skd`` (warm-started: ILKD for the first half of the steps, then ILKD+SKD, as the paper advises). Every run is
an ordinary nf run folder; the reports' test numbers are collected into a Markdown table with the mean and standard
error over seeds, the share of the teacher-student gap closed, and the paired wins over the likelihood-only student.
Nothing is tuned on the test split: the configurations are fixed in the scripts.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.train import Trainer, make_run_config
from nfkit_distill import DistillTrainer

ARMS = ("nll", "lkd", "ilkd", "ilkd+skd")


def _fit(trainer: Trainer) -> dict[str, Any]:
    try:
        return trainer.fit()
    finally:
        trainer.close()


def train_teacher(out: Path, arch: str, dataset: str, model: Mapping[str, Any], data: Mapping[str, Any],
                  train: Mapping[str, Any]) -> dict[str, Any]:
    """Train the teacher into ``out`` (or read its report if it is already there)."""
    if (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    run = make_run_config(arch, dataset, model=dict(model), data=dict(data), train=dict(train))
    return _fit(Trainer(run, out))


def train_student(out: Path, arm: str, teacher: Path, arch: str, dataset: str, model: Mapping[str, Any],
                  data: Mapping[str, Any], train: Mapping[str, Any],
                  options: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One student run of ``arm`` (see the module docstring); ``options[arm]`` are the distiller's options."""
    if (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    run = make_run_config(arch, dataset, model=dict(model), data=dict(data), train=dict(train))
    if arm == "nll":
        return _fit(Trainer(run, out))
    if arm != "ilkd+skd":
        return _fit(DistillTrainer(run, out, teacher=teacher, distiller=arm, options=dict(options.get(arm, {}))))
    trainer = DistillTrainer(run, out, teacher=teacher, distiller="ilkd", options=dict(options.get("ilkd", {})))
    try:
        trainer.fit(until=run.train.steps // 2)
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


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def table(results: Mapping[str, list[float]], teacher: float, unit: str, higher_is_better: bool,
          params: Mapping[str, int], latency: Mapping[str, float], extra: Mapping[str, Callable[[str], str]]
          | None = None) -> str:
    """The Markdown table: per arm mean +- s.e., share of the gap closed (mean over seeds of the paired share, and
    the share of the mean gap), paired wins over ``nll``, parameters and sampling latency."""
    sign = 1.0 if higher_is_better else -1.0
    baseline = results["nll"]
    head = (f"| arm | test {unit} (mean +- s.e.) | gap closed | gap closed +- s.e. (per seed) | wins vs nll "
            f"| params | sampling latency (s / batch) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines.append(f"| teacher | {teacher:.4f} | 100% | | | {params['teacher']} | {latency['teacher']:.4f} |")
    for arm, values in results.items():
        mean, se = mean_se(values)
        gap = sign * (teacher - statistics.fmean(baseline))
        closed = sign * (mean - statistics.fmean(baseline)) / gap if gap else float("nan")
        per_seed = [sign * (v - b) / (sign * (teacher - b)) for v, b in zip(values, baseline)]
        closed_mean, closed_se = mean_se(per_seed)
        wins = sum(sign * (v - b) > 0 for v, b in zip(values, baseline))
        win_text = "" if arm == "nll" else f"{wins}/{len(values)}"
        lines.append(f"| {arm} | {mean:.4f} +- {se:.4f} | {closed:.1%} | "
                     f"{'' if arm == 'nll' else f'{closed_mean:.1%} +- {closed_se:.1%}'} | {win_text} | "
                     f"{params['student']} | {latency['student']:.4f} |")
    return "\n".join(lines) + "\n"
