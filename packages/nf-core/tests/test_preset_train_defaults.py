"""Training defaults that an architecture's preset brings (``ArchitectureSpec.train_defaults``), and the schedule."""

from __future__ import annotations

import dataclasses

import pytest

import nfkit_core.testing.tiny as tiny
from nfkit_core.checkpoint import read_checkpoint, save_checkpoint
from nfkit_core.cli.settings import describe_fields
from nfkit_core.errors import ConfigError
from nfkit_core.plugins import PluginManager
from nfkit_core.train import TrainConfig, Trainer, make_run_config, warmup_cosine


@pytest.fixture
def registry():
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    registry = manager.registry
    spec = registry.architectures.get("tiny")
    recipe = {"lr": 1e-4, "betas": [0.9, 0.95], "warmup_epochs": 1, "warmup_start_ratio": 0.01}
    registry.architectures.add(dataclasses.replace(spec, name="tiny-paper", presets={**spec.presets, "paper": {}},
                                                   train_defaults={"paper": recipe}))
    return registry


def test_a_presets_training_defaults_apply_and_the_runs_options_win(registry):
    paper = make_run_config("tiny-paper", "digits", preset="paper", registry=registry).train
    assert (paper.lr, paper.betas, paper.warmup_epochs, paper.warmup_start_ratio) == (1e-4, (0.9, 0.95), 1.0, 0.01)
    overridden = make_run_config("tiny-paper", "digits", preset="paper", train={"betas": [0.8, 0.9]}, registry=registry)
    assert (overridden.train.lr, overridden.train.betas) == (1e-4, (0.8, 0.9))
    assert make_run_config("tiny-paper", "digits", registry=registry).train == TrainConfig()


def test_warmup_in_epochs_and_from_a_starting_rate():
    config = TrainConfig(warmup_steps=7, warmup_epochs=1.5, warmup_start_ratio=0.2)
    assert config.warmup_steps_for(steps_per_epoch=10) == 15
    assert TrainConfig(warmup_steps=7).warmup_steps_for(steps_per_epoch=10) == 7
    lrs = [warmup_cosine(step, 1.0, 4, 14, start_ratio=0.2) for step in range(5)]
    assert lrs == pytest.approx([0.4, 0.6, 0.8, 1.0, 1.0])
    with pytest.raises(ConfigError, match="warmup_start_ratio must lie in"):
        TrainConfig(warmup_start_ratio=1.5)
    with pytest.raises(ConfigError, match="warmup_epochs must not be negative"):
        TrainConfig(warmup_epochs=-1.0)


def test_the_checkpoint_records_the_warmup_in_steps_and_old_records_still_resume(registry, tmp_path):
    run = make_run_config("tiny", "digits", registry=registry, train={
        "steps": 2, "batch_size": 64, "warmup_steps": 7, "warmup_epochs": 1.5, "warmup_start_ratio": 0.1,
        "progress": False, "val_every": 100, "sample_every": 100})
    trainer = Trainer(run, tmp_path, registry=registry)
    trainer.fit()
    resolved = round(1.5 * trainer.steps_per_epoch)
    assert trainer.steps_per_epoch > 1 and resolved != 7
    state = read_checkpoint(tmp_path)
    assert state["schedule"] == {"name": "warmup_cosine", "lr": 1e-3, "warmup_steps": resolved, "total_steps": 2,
                                 "min_lr_ratio": 0.0, "warmup_start_ratio": 0.1}
    assert trainer.learning_rate(0) == pytest.approx(1e-3 * (0.1 + 0.9 / resolved))
    state["schedule"] = {"name": "warmup_cosine", "lr": 1e-3, "warmup_steps": 7, "total_steps": 2,
                         "min_lr_ratio": 0.0}  # the record of checkpoints written before
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    resumed = Trainer.resume(tmp_path, {"steps": 3}, registry=registry)
    resumed.fit()
    assert resumed.step == 3 and read_checkpoint(tmp_path)["schedule"]["warmup_steps"] == resolved


def test_help_lists_each_presets_training_defaults(registry):
    spec = registry.architectures.get("tiny-paper")
    text = describe_fields(spec.config_class, "model", spec.presets, train_defaults=spec.train_defaults)
    paper = text[text.index("    paper:"):]
    assert "training defaults: train.lr=0.0001, train.betas=[0.9, 0.95]" in paper
    assert text.count("training defaults") == 1
