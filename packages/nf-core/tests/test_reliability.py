"""Nothing lost, nothing broken kept: full disks, torn files, stale temporaries, non-finite weights and likelihoods,
diverging runs, strict JSON, and options that cannot work. (Signals to a real `nf train` are in integration_tests.)"""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess

import pytest
import torch

from nfkit_core import files
from nfkit_core.checkpoint import NonFiniteStateError, read_checkpoint, save_checkpoint
from nfkit_core.errors import ConfigError
from nfkit_core.files import DiskFullError, atomic_write, remove_stale_temporaries, to_json
from nfkit_core.train import NonFiniteEvaluationError, NonFiniteLossError, Trainer, make_run_config
from nfkit_core.train.artifacts import RunFolderError, check_run_folder
from nfkit_core.train.metrics import MetricsLog
from nfkit_core.train.trainer import LAST_SANE_CHECKPOINT

QUIET = {"progress": False, "val_every": 1000, "sample_every": 1000}
TOY = {"train_size": 128, "eval_size": 32}


def toy_run(registry, **train):
    return make_run_config("tiny", "toy2d", data=TOY, train={"batch_size": 16, **QUIET, **train}, registry=registry)


# ------------------------------------------------------------------------------------------------- full disk

def full_disk_writer(written: bytes):
    def write(file):
        file.write(written)
        raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_a_full_disk_is_one_clear_error_and_the_previous_file_stays(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"the previous checkpoint")
    with pytest.raises(DiskFullError, match=rf"the disk is full: writing {path} needs about 2.0 MiB \(.* free\)"):
        atomic_write(path, full_disk_writer(b"half of it"), needed=2 * 1024**2)
    assert path.read_bytes() == b"the previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    save_checkpoint({"step": 1, "model": {"w": torch.ones(3)}}, tmp_path / "checkpoint.pt")

    def no_space(state, file):
        file.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(DiskFullError, match="checkpoint.pt needs about"):
        save_checkpoint({"step": 2, "model": {"w": torch.zeros(3)}}, tmp_path / "checkpoint.pt")
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 1


def test_a_full_disk_while_appending_metrics_is_one_clear_error(tmp_path, monkeypatch):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"step": 1, "loss": 2.0})

    class FullFile:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "open", FullFile, raising=False)
    with pytest.raises(DiskFullError, match=f"writing {tmp_path / 'metrics.jsonl'} needs about 25 bytes"):
        log.append({"step": 2, "loss": 1.5})


@pytest.mark.parametrize("tail", [b'{"step": 3, "lo', b"\x00" * 40, b'{"step": 3, "loss": 1.0}\x00\x00'])
def test_resume_drops_a_torn_or_nul_filled_last_metrics_line(tmp_path, tail):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n' + tail)
    with pytest.warns(UserWarning, match=r"metrics.jsonl: line 3 is torn .*dropped it"):
        log = MetricsLog(path, start_step=2)
    assert [row["step"] for row in log.rows] == [1, 2]
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]  # repaired on disk


def test_damage_before_the_last_metrics_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2,,}\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a JSON object"):
        MetricsLog(path, start_step=3)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_run_on_a_filesystem_that_fills_up_keeps_its_checkpoint(registry, tmp_path):
    """A real full disk: a tmpfs with room for one checkpoint and its files, not for a second copy."""
    probe = tmp_path / "probe"
    Trainer(toy_run(registry, steps=1), probe, registry=registry).fit(until=1)
    size = (probe / "checkpoint.pt").stat().st_size
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(1.6 * size) + 16384}", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        trainer = Trainer(toy_run(registry, steps=4, checkpoint_every=1, log_every=1), disk / "run",
                          registry=registry)
        with pytest.raises(DiskFullError, match=rf"the disk is full: writing {disk / 'run'}/\S+ needs about"):
            trainer.fit()
        state = read_checkpoint(disk / "run")  # the previous checkpoint is intact
        assert state["step"] == 1
        assert not list((disk / "run").glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ------------------------------------------------------------------------------------------- run folders

def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".checkpoint.pt.{dead.pid}.tmp"
    ours = tmp_path / f".checkpoint.pt.{os.getpid()}.tmp"
    for path in (stale, ours):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert ours.exists() and not stale.exists()


def test_a_new_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    assert check_run_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "notes.txt").write_text("my thesis")
    with pytest.raises(RunFolderError, match=r"is a non-empty folder that is not an nf run \(it holds notes.txt\)"):
        check_run_folder(tmp_path)
    assert check_run_folder(tmp_path, force=True) == tmp_path
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")  # a run that stopped before its first checkpoint
    assert check_run_folder(tmp_path / "run") == tmp_path / "run"
    with pytest.raises(RunFolderError, match="notes.txt is a file, not a folder"):
        check_run_folder(tmp_path / "notes.txt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(RunFolderError, match="permission denied"):
            check_run_folder(tmp_path / "run")
    finally:
        tmp_path.chmod(0o700)


# ------------------------------------------------------------------------------------- non-finite values

def test_an_update_that_makes_the_weights_non_finite_is_never_saved(registry, tmp_path):
    trainer = Trainer(toy_run(registry, steps=5, lr=1e39, warmup_steps=0, checkpoint_every=1), tmp_path,
                      registry=registry)
    with pytest.raises(NonFiniteLossError, match=r"the update of step 1 made the weights non-finite .*no checkpoint "
                                                 r"had been written yet"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_checkpoint_with_non_finite_values_is_refused(tmp_path):
    with pytest.raises(NonFiniteStateError, match=r"non-finite values in model.w"):
        save_checkpoint({"step": 1, "model": {"w": torch.tensor([1.0, math.nan])}}, tmp_path / "c.pt")
    with pytest.raises(NonFiniteStateError, match=r"optimizer.state.0.exp_avg_sq"):
        save_checkpoint({"step": 1, "model": {}, "optimizer": {"state": {0: {"exp_avg_sq": torch.tensor([math.inf])}}}},
                        tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()


def test_a_diverged_run_goes_back_to_its_last_checkpoint_with_a_sane_loss(registry, tmp_path):
    trainer = Trainer(toy_run(registry, steps=10, checkpoint_every=1, log_every=1), tmp_path, registry=registry)
    trainer.fit(until=2)
    trainer.initial_loss = -1e6  # from here on every loss counts as diverged (far above the first step's)
    trainer.fit(until=4)
    assert read_checkpoint(tmp_path)["step"] == 4
    assert read_checkpoint(tmp_path / LAST_SANE_CHECKPOINT)["step"] == 2
    with torch.no_grad():
        next(trainer.flow.parameters()).fill_(math.inf)  # the loss of step 5 is not finite
    with pytest.raises(NonFiniteLossError, match=r"checkpoints after step 2 had diverging losses .* is back at "
                                                 r"step 2, the last with a sane loss"):
        trainer.fit()
    assert read_checkpoint(tmp_path)["step"] == 2 and not (tmp_path / LAST_SANE_CHECKPOINT).exists()
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "non-finite loss" and last["loss"] in ("nan", "inf")  # valid JSON, no bare NaN


def test_a_non_finite_held_out_likelihood_is_an_error_naming_the_split_and_the_rows(registry, tmp_path):
    trainer = Trainer(toy_run(registry, steps=2), tmp_path, registry=registry)
    real = trainer.flow.log_prob

    def some_nan(x, context=None):
        log_prob = real(x, context)
        return torch.where(x[:, 0] > 1.5, torch.full_like(log_prob, math.nan), log_prob)

    trainer.flow.log_prob = some_nan
    rows = int((trainer.val_set.data[:, 0] > 1.5).sum())
    assert rows > 0
    with pytest.raises(NonFiniteEvaluationError, match=rf"NaN or infinite for {rows} of 32 examples of the 'val'"):
        trainer.evaluate(trainer.val_set)


def test_json_is_written_without_nan():
    assert to_json({"a": 1.5}) == '{"a": 1.5}'
    with pytest.raises(ValueError, match="refusing to write a non-finite number as JSON"):
        to_json({"val_bpd": math.nan})


# ------------------------------------------------------------------------------------ options and devices

@pytest.mark.parametrize(("option", "value", "message"), [
    ("num_workers", -1, r"must not be negative: \{'num_workers': -1\}"),
    ("warmup_steps", -10, r"must not be negative: \{'warmup_steps': -10\}"),
    ("cpu_threads", 0, r"must be positive: \{'cpu_threads': 0\}"),
    ("sample_temperature", -1.0, "sample_temperature must be a positive number"),
    ("sample_temperature", math.nan, "sample_temperature must be a positive number"),
    ("lr", math.inf, "lr must be a positive number"),
])
def test_training_options_that_cannot_work_are_named(registry, option, value, message):
    with pytest.raises(ValueError, match=message):
        make_run_config("tiny", "toy2d", train={option: value}, registry=registry)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_loading_onto_cuda_without_cuda_says_so(registry, tmp_path):
    Trainer(toy_run(registry, steps=1), tmp_path, registry=registry).fit(until=1)
    with pytest.raises(ConfigError, match="CUDA is not available on this machine .*map_location='cpu'"):
        read_checkpoint(tmp_path, map_location="cuda")


def test_sampling_zero_gives_an_empty_batch_and_bad_temperatures_are_refused(registry):
    import nfkit_core.testing.tiny as tiny
    from nfkit_core.plugins import DataInfo

    flow = tiny.build_tiny(tiny.TinyConfig(), DataInfo(shape=(2,)))
    assert flow.sample(0).shape == (0, 2)
    for temperature in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            flow.sample(2, temperature=temperature)
