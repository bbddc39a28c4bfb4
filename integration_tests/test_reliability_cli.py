"""`nf train`, `nf distill` and `nf sample` as a user runs them: signals, outlier rows, run folders, bad sampling
options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nfkit_core.checkpoint import read_checkpoint
from nfkit_core.cli import main
from nfkit_core.plugins import DataInfo
from nfkit_core.train import Trainer
from nfkit_core.train.interrupt import StopRequests

NF = [sys.executable, "-m", "nfkit_core.cli"]
QUIET = ["--set", "train.progress=false", "--set", "train.val_every=100000", "--set", "train.sample_every=100000"]


LONG = ["--set", "train.steps=1000000", "--set", "train.log_every=1", "--set", "train.checkpoint_every=1000000",
        "--set", "train.batch_size=32"]
TOY2D = ["--set", "data.train_size=512", "--set", "data.eval_size=64"]


def start_long_run(out: Path, teacher: Path | None = None) -> subprocess.Popen:
    """A MAF on toy2d for far more steps than it will run, logging every step, checkpointing only at the end: trained
    by ``nf train``, or distilled by ``nf distill`` from ``teacher``."""
    if teacher is None:
        command = [*NF, "train", "--arch", "maf", "--data", "toy2d", *TOY2D]
    else:
        command = [*NF, "distill", "--teacher", str(teacher), "--set", "model.num_layers=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*command, "--out", str(out), *QUIET, *LONG], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def maf_teacher(tmp_path_factory) -> Path:
    """A MAF trained for two steps on toy2d: a teacher for ``nf distill``."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["train", "--arch", "maf", "--data", "toy2d", "--out", str(out), *QUIET, *TOY2D,
                 "--set", "train.steps=2", "--set", "train.batch_size=32"]) == 0
    return out


def wait_for_steps(out: Path, steps: int, process: subprocess.Popen, timeout: float = 600) -> None:
    """Wait until the run has logged ``steps`` steps (the first start in a fresh environment compiles the bytecode
    of torch and can take minutes on a busy machine)."""
    deadline = time.monotonic() + timeout
    metrics = out / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= steps:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the run did not reach step {steps} in {timeout} s")


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_step_writes_a_checkpoint_and_says_how_to_resume(tmp_path, signal_number, exit_code):
    out = tmp_path / "run"
    process = start_long_run(out)
    wait_for_steps(out, 5, process)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == exit_code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"nf train --resume {out}" in lines[0], stderr  # one line, no traceback
    step = read_checkpoint(out)["step"]
    assert step >= 5 and f"stopped after step {step}" in lines[0]
    assert not list(out.glob(".*.tmp"))
    if signal_number != signal.SIGINT:
        return  # resuming is the same after either signal: once is enough
    resumed = subprocess.run([*NF, "train", "--resume", str(out), "--set", f"train.steps={step + 2}"],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(out)["step"] == step + 2


@pytest.mark.parametrize("command", ["train", "distill"])
def test_a_second_interrupt_aborts_at_once(tmp_path, monkeypatch, capsys, command, request):
    """Ctrl-C as training starts, and again while the checkpoint is being written: ``nf train`` and ``nf distill``
    abort at once with 130 (in one process, so that the second signal surely comes after the first was handled: two
    signals sent to a child back to back may reach it as one)."""
    def ctrl_c_after_entering(stop_requests):
        stop = enter(stop_requests)
        os.kill(os.getpid(), signal.SIGINT)
        return stop

    def ctrl_c_while_saving(trainer):
        saves.append(trainer.step)
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the second Ctrl-C did not abort")

    if command == "train":
        args = ["train", "--arch", "maf", "--data", "toy2d", *TOY2D]
    else:
        args = ["distill", "--teacher", str(request.getfixturevalue("maf_teacher")), "--set", "model.num_layers=1"]
    enter, saves = StopRequests.__enter__, []
    monkeypatch.setattr(StopRequests, "__enter__", ctrl_c_after_entering)
    monkeypatch.setattr(Trainer, "save", ctrl_c_while_saving)
    out = tmp_path / "run"
    capsys.readouterr()
    handler = signal.getsignal(signal.SIGINT)
    assert main([*args, "--out", str(out), *QUIET, *LONG]) == 130
    assert saves == [1]
    assert capsys.readouterr().err.splitlines() == [f"nf {command}: aborted; the last checkpoint is kept in {out}"]
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_nf_distill_stops_on_a_signal_as_nf_train_does_and_names_its_own_resume(tmp_path, maf_teacher):
    out = tmp_path / "run"
    process = start_long_run(out, maf_teacher)
    wait_for_steps(out, 5, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 143, stderr
    step = read_checkpoint(out)["step"]
    assert stderr.strip().splitlines() == [
        f"nf distill: SIGTERM: stopped after step {step}; checkpoint written to {out / 'checkpoint.pt'}; continue "
        f"with: nf distill --resume {out}"], stderr


def test_outlier_rows_get_a_finite_likelihood_and_the_report_is_valid_json(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(700, 4)) @ rng.normal(size=(4, 4))
    splits = {"train": data[:500], "val": data[500:600].copy(), "test": data[600:].copy()}
    splits["val"][:5] = 20 * data.std(0)  # five rows at about 20 standard deviations
    splits["test"][:5] = -30 * data.std(0)
    np.savez(tmp_path / "outliers.npz", **splits)
    out = tmp_path / "run"
    code = main(["train", "--arch", "maf", "--data", "tabular", "--preset", "tabular-small", "--out", str(out),
                 "--set", f"data.root={tmp_path / 'outliers.npz'}", "--set", "train.steps=60",
                 "--set", "train.batch_size=50", "--set", "train.progress=false"])
    assert code == 0
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert report["data_dimension"] == 4
    assert np.isfinite([report["val_bpd"], report["test_bpd"], report["val_nats"], report["test_nats"]]).all()
    assert report["test_nats"] == pytest.approx(report["test_bpd"] * 4 * np.log(2))
    assert report["test_nats_file_units"] == pytest.approx(report["test_nats"] - report["data_log_abs_det"])
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}"))


def test_lr_1e39_stops_at_step_1_without_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--arch", "maf", "--data", "toy2d", "--out", str(out), *QUIET, "--set", "train.lr=1e39",
                 "--set", "train.warmup_steps=0", "--set", "train.checkpoint_every=1", "--set", "data.train_size=256"])
    assert code == 2
    assert "the update of step 1 made the weights non-finite" in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.npy")]) == 2  # nothing to sample


def test_out_folders_that_are_not_runs_and_bad_sampling_options_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("...")
    train = ["train", "--arch", "maf", "--data", "toy2d", *QUIET, "--set", "train.steps=2",
             "--set", "data.train_size=128", "--set", "data.eval_size=16", "--set", "train.batch_size=16"]
    assert main([*train, "--out", str(tmp_path / "thesis")]) == 2
    assert "not an nf run (it holds chapter1.tex)" in capsys.readouterr().err
    assert main([*train, "--out", str(tmp_path / "thesis" / "chapter1.tex")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main([*train, "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    for options, message in ((["--temperature", "-1"], "--temperature must be a positive number, got -1.0"),
                             (["--temperature", "nan"], "--temperature must be a positive number, got nan"),
                             (["--temperature", "inf"], "--temperature must be a positive number, got inf"),
                             (["--nrow", "-3"], "--nrow must be at least 1, got -3")):
        assert main(["sample", str(tmp_path / "run"), "-n", "4", *options, "--out", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert main(["sample", str(tmp_path / "run"), "-n", "4", "--out", str(tmp_path / "thesis.npy")]) == 0
    (tmp_path / "folder.npy").mkdir()
    assert main(["sample", str(tmp_path / "run"), "-n", "4", "--out", str(tmp_path / "folder.npy")]) == 2
    assert "is a folder; name the file to write" in capsys.readouterr().err


def test_sampling_zero_gives_an_empty_batch_in_every_architecture(registry):
    for name in registry.architectures.names():
        spec = registry.architectures.get(name)
        image = name not in ("maf", "realnvp")
        data = DataInfo((1, 8, 8), 0, 17) if image else DataInfo((2,))
        config = spec.make_config("digits" if "digits" in spec.presets and image else None)
        flow = spec.build(config, data).eval()
        with torch.no_grad():
            assert flow.sample(0).shape == (0, *data.shape), name
