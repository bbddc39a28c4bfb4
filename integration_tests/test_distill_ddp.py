"""``nf distill`` under ``torchrun`` (two processes, gloo on CPU) trains exactly like one process with the same global
batch, as nf-core's ``test_ddp.py`` shows for ``nf train``: the same student weights, logged losses and held-out
bits/dim (an integration test: the teacher and student are Glows, from nfkit-glow-maf). ILKD+SKD exercises both
distillation terms: each process feeds its rows of the batch to the frozen teacher, and SKD's latents are drawn for
the global batch, every process keeping its rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from nfkit_core.checkpoint import read_checkpoint
from nfkit_core.cli import main

# Dequantization noise, data order and ActNorm's data-dependent start all depend on the processes' batches; 179
# training images, global batch 32 (16 per process), one thread each.
DATA = ["--set", "data.val_fraction=0.45", "--set", "data.test_fraction=0.45"]
TRAIN = ["--set", "train.steps=4", "--set", "train.batch_size=32", "--set", "train.warmup_steps=2",
         "--set", "train.log_every=2", "--set", "train.val_every=2", "--set", "train.sample_every=4",
         "--set", "train.num_samples=8", "--set", "train.progress=false", "--set", "train.cpu_threads=1"]


def distill_args(teacher, out) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--out", str(out), "--loss", "ilkd+skd",
            "--set", "model.steps_per_level=1", "--set", "model.hidden_channels=8", "--set", "model.learn_top=false",
            *TRAIN]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_nf_distill_in_two_processes_trains_like_one(tmp_path, restore_threads):
    teacher = tmp_path / "teacher"
    assert main(["train", "--arch", "glow", "--data", "digits", "--out", str(teacher), "--set", "model.num_levels=2",
                 "--set", "model.steps_per_level=2", "--set", "model.hidden_channels=8", *DATA, *TRAIN]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "nfkit_core.cli", *distill_args(teacher, tmp_path / "ddp")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert main(distill_args(teacher, tmp_path / "single")) == 0

    ddp, single = read_checkpoint(tmp_path / "ddp"), read_checkpoint(tmp_path / "single")
    assert ddp["step"] == single["step"] == 4 and len(ddp["rng"]) == 2
    # All-reduced gradients are summed in another order; Adam magnifies the rounding where gradients are near zero:
    # the weights agree to ~1e-5, far below what a wrong batch, noise draw or teacher input would move (~lr = 1e-3).
    # (The student has a fixed top prior: a learned one starts at the data's mean, which ActNorm's initialisation
    # makes zero, so its gradient is near zero throughout these steps and its Adam steps are rounding, ~1e-4.)
    for name, weight in single["model"].items():
        torch.testing.assert_close(ddp["model"][name], weight, rtol=1e-3, atol=1e-4, msg=name)

    def rows(folder):
        return [json.loads(line) for line in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]

    ddp_rows, single_rows = rows("ddp"), rows("single")
    assert [sorted(r) for r in ddp_rows] == [sorted(r) for r in single_rows]
    for a, b in zip(ddp_rows, single_rows):
        for key in ("loss", "bpd", "val_bpd"):  # averaged over the global batch (distill_*: rank 0's rows only)
            if key in a:
                assert abs(a[key] - b[key]) < 1e-5 * abs(b[key]), (a, b)
    reports = {name: json.loads((tmp_path / name / "report.json").read_text()) for name in ("ddp", "single")}
    assert reports["ddp"]["processes"] == 2 and reports["single"]["processes"] == 1
    for key in ("val_bpd", "test_bpd"):
        assert abs(reports["ddp"][key] - reports["single"][key]) < 1e-5 * reports["single"][key]
    assert json.loads((tmp_path / "ddp" / "distill.json").read_text()) == json.loads(
        (tmp_path / "single" / "distill.json").read_text())
