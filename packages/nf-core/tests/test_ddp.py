"""Two processes under ``torchrun`` (gloo on CPU) train exactly like one process with the same global batch.

Run as a script (``python -m torch.distributed.run --nproc_per_node 2 test_ddp.py OUT``) this file is the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import nfkit_core.testing.tiny as tiny
from nfkit_core.checkpoint import read_checkpoint
from nfkit_core.plugins import PluginManager
from nfkit_core.train import Trainer, make_run_config, start_process

# Every source of randomness is on: data order, dequantization noise, flips, label dropout; ActNorm initialises from
# the data. 179 training images, global batch 32: 16 per process; one thread each (train.cpu_threads).
TRAIN = {"steps": 6, "batch_size": 32, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.8, "hflip": True,
         "class_conditional": True, "label_dropout": 0.25, "val_every": 3, "sample_every": 6, "num_samples": 10,
         "log_every": 3, "progress": False}
DATA = {"val_fraction": 0.45, "test_fraction": 0.45}


def train(out_dir: str | Path) -> Trainer:
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    run = make_run_config("tiny", "digits", data=DATA, train=TRAIN, registry=manager.registry)
    trainer = Trainer(run, out_dir, registry=manager.registry, dist=start_process(run.train))
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer


def test_two_processes_train_like_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
               str(tmp_path / "ddp")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    single = train(tmp_path / "single")
    ddp = read_checkpoint(tmp_path / "ddp")
    assert ddp["step"] == 6 and len(ddp["rng"]) == 2
    # Summation order differs (gradients are all-reduced), and Adam divides by the gradient's running RMS, which
    # magnifies rounding where gradients are near zero: weights agree to ~1e-5, 1% of one step of lr = 1e-3; a wrong
    # batch or noise would move them by the order of lr.
    for name, weight in single.flow.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], weight, rtol=1e-3, atol=1e-4, msg=name)
        torch.testing.assert_close(ddp["ema"][name], single.ema.state_dict()[name], rtol=1e-3, atol=1e-4, msg=name)
    assert ddp["model"]["transform.transforms.actnorm.initialized"].item()

    def rows(folder):
        return [json.loads(line) for line in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]

    ddp_rows, single_rows = rows("ddp"), rows("single")
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in single_rows]  # rank 0 alone wrote, once per step
    for a, b in zip(ddp_rows, single_rows):
        for key in ("loss", "bpd", "val_bpd"):
            if key in a:
                assert abs(a[key] - b[key]) < 1e-5 * abs(b[key]), (a, b)
    ddp_report = json.loads((tmp_path / "ddp" / "report.json").read_text())
    single_report = json.loads((tmp_path / "single" / "report.json").read_text())
    assert ddp_report["processes"] == 2 and single_report["processes"] == 1
    for key in ("val_bpd", "test_bpd"):
        assert abs(ddp_report[key] - single_report[key]) < 1e-5 * single_report[key]
    assert (tmp_path / "ddp" / "samples" / "step_000006.png").is_file()


if __name__ == "__main__":
    train(sys.argv[1])
