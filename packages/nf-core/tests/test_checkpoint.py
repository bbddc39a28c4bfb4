"""Checkpoints: contents, atomic writes, safe loading, rebuilding through the registry, clear errors."""

from __future__ import annotations

import os

import pytest
import torch

import nfkit_core
import nfkit_core.testing.tiny as tiny
from nfkit_core.checkpoint import CheckpointError, build_flow, load_checkpoint, read_checkpoint, save_checkpoint
from nfkit_core.plugins import PluginManager, UnknownNameError
from nfkit_core.train import Trainer, make_run_config


@pytest.fixture(scope="module")
def trained(registry, tmp_path_factory):
    """A short run on digits with a weight average; its folder and trainer."""
    folder = tmp_path_factory.mktemp("run")
    run = make_run_config("tiny", "digits", data={"val_fraction": 0.45, "test_fraction": 0.45},
                          train={"steps": 3, "batch_size": 32, "ema_decay": 0.5, "progress": False,
                                 "val_every": 100, "sample_every": 100}, registry=registry)
    trainer = Trainer(run, folder, registry=registry)
    trainer.fit()
    return folder, trainer


def test_a_checkpoint_holds_the_whole_run(trained):
    folder, trainer = trained
    state = read_checkpoint(folder / "checkpoint.pt")
    assert (state["format"], state["format_version"]) == ("nf-checkpoint", 1)
    assert state["architecture"] == "tiny" and state["model_config"] == {"hidden": 12, "dequantize": False}
    assert state["preset"] == "digits" and state["dataset"] == "digits"
    assert state["data_config"] == {"val_fraction": 0.45, "test_fraction": 0.45, "split_seed": 0}
    assert state["data_info"] == {"shape": [1, 8, 8], "num_classes": 0, "num_bins": 17}
    assert state["preprocessing"]["mode"] == "dequantize" and state["step"] == 3
    assert state["train_config"]["ema_decay"] == 0.5 and state["train_config"]["betas"] == (0.9, 0.999)
    assert state["schedule"] == {"name": "warmup_cosine", "lr": 1e-3, "warmup_steps": 100, "total_steps": 3,
                                 "min_lr_ratio": 0.0, "warmup_start_ratio": 0.0}
    assert state["optimizer"]["state"][0]["step"].item() == 3
    assert state["versions"]["nfkit-core"] == nfkit_core.version() and state["versions"]["torch"] == torch.__version__
    assert set(state["rng"][0]) == {"torch", "cuda"}
    for key, value in trainer.flow.state_dict().items():
        assert torch.equal(state["model"][key], value)
        assert torch.equal(state["ema"][key], trainer.ema.state_dict()[key])


def test_load_checkpoint_rebuilds_the_flow_through_the_registry(trained, registry):
    folder, trainer = trained
    x = trainer.val_set.data[:8].float()
    with nfkit_core.noise.use(torch.Generator().manual_seed(0)):
        y = trainer.preprocessing(x, torch.zeros(8, dtype=torch.long), train=False)[0]
    flow = load_checkpoint(folder, registry=registry)
    assert not flow.training
    assert torch.equal(flow.log_prob(y), trainer.ema.model.log_prob(y))  # the average by default
    trained_weights = load_checkpoint(folder / "checkpoint.pt", ema=False, registry=registry)
    assert torch.equal(trained_weights.log_prob(y), trainer.flow.eval().log_prob(y))
    assert not torch.equal(trained_weights.log_prob(y), flow.log_prob(y))


def test_an_interrupted_write_leaves_the_old_checkpoint(trained, tmp_path, monkeypatch):
    folder, _ = trained
    path = tmp_path / "checkpoint.pt"
    state = read_checkpoint(folder)
    save_checkpoint(state, path)
    before = path.read_bytes()

    def crash(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({**state, "step": 4}, path)
    assert path.read_bytes() == before and read_checkpoint(path)["step"] == 3
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]  # no temporary file left behind


def test_truncated_and_foreign_files_are_clear_errors(trained, tmp_path):
    folder, _ = trained
    data = (folder / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{truncated} is not a readable checkpoint: truncated, corrupt"):
        read_checkpoint(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt is not a readable checkpoint"):
        read_checkpoint(text)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy.pt is not a readable checkpoint"):
        read_checkpoint(legacy)
    foreign = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="model.pt is a PyTorch file but not an nf checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "missing.pt")
    incomplete = tmp_path / "incomplete.pt"
    torch.save({"format": "nf-checkpoint", "format_version": 1, "architecture": "tiny"}, incomplete)
    with pytest.raises(CheckpointError, match=r"incomplete nf checkpoint: missing \['model_config', 'data_info'"):
        read_checkpoint(incomplete)
    newer = tmp_path / "newer.pt"
    torch.save({**read_checkpoint(folder), "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="has checkpoint format 99, newer than this nfkit-core reads"):
        read_checkpoint(newer)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_file_that_could_run_code_is_refused(tmp_path, capfd):
    path = tmp_path / "evil.pt"
    torch.save({"format": "nf-checkpoint", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain values"):
        read_checkpoint(path)
    assert "must never run" not in capfd.readouterr().out


def test_only_plain_values_are_written(tmp_path):
    from pathlib import Path

    with pytest.raises(TypeError, match=r"checkpoint\['data_config'\]\['root'\] is a PosixPath; checkpoints hold only"):
        save_checkpoint({"data_config": {"root": Path("/data")}}, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()


def test_a_missing_architecture_or_changed_config_is_named(trained):
    folder, _ = trained
    state = read_checkpoint(folder)
    bare = PluginManager(autoload=False).registry
    with pytest.raises(UnknownNameError, match="the checkpoint needs architecture 'tiny' .*which no installed plugin"):
        build_flow(state, registry=bare)
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    with pytest.raises(CheckpointError, match="the stored config of architecture 'tiny' does not fit"):
        build_flow({**state, "model_config": {"hidden": 12, "width": 3}}, registry=manager.registry)
    with pytest.raises(CheckpointError, match="the stored weights do not fit architecture 'tiny'"):
        build_flow({**state, "model_config": {"hidden": 5}}, registry=manager.registry)
    with pytest.raises(CheckpointError, match="no moving-average weights"):
        build_flow({**state, "ema": None}, registry=manager.registry, ema=True)


def test_a_checkpoint_with_the_old_option_names_still_loads(trained, tmp_path):
    """``noise_sigma`` (train options, preprocessing) is ``noise_std`` now, as on the flows."""
    folder, _ = trained
    state = read_checkpoint(folder / "checkpoint.pt")
    assert state["train_config"]["noise_std"] is None and state["preprocessing"]["noise_std"] == 0.0
    for section in ("train_config", "preprocessing"):
        state[section]["noise_sigma"] = state[section].pop("noise_std")
    torch.save(state, tmp_path / "old.pt")
    old = read_checkpoint(tmp_path / "old.pt")
    assert "noise_sigma" not in old["train_config"] and old["preprocessing"]["noise_std"] == 0.0
