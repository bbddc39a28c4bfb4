"""The paper's presets: their size, and the training recipe they bring."""

from __future__ import annotations

import math

import pytest
import torch

from nfkit_core.train import Trainer, make_run_config
from nfkit_core.train.schedule import warmup_cosine
from nfkit_tarflow import PRESETS, TarFlow, TarFlowConfig


@pytest.mark.parametrize(("preset", "size", "num_classes", "count"), [
    ("imagenet64", 64, 0, 460_142_784),
    ("imagenet128", 128, 1000, 823_927_552),
    ("afhq256", 256, 3, 463_481_856),
])
def test_paper_presets_have_the_official_layout_and_size(preset, size, num_classes, count):
    """The counts stated in the presets' comment (the official ``transformer_flow.Model`` of the same arguments)."""
    with torch.device("meta"):
        flow = TarFlow(TarFlowConfig(**PRESETS[preset]), (3, size, size), num_classes)
    config = flow.config
    assert (config.num_blocks, config.layers_per_block, config.head_dim, config.expansion) == (8, 8, 64, 4)
    assert sum(p.numel() for p in flow.parameters()) == count


@pytest.mark.parametrize("preset", ["imagenet64", "imagenet128", "afhq256"])
def test_paper_presets_bring_the_papers_training_recipe(preset):
    """AdamW (0.9, 0.95), weight decay 1e-4, lr 1e-6 -> 1e-4 over one epoch, then a cosine down to 1e-6."""
    run = make_run_config("tarflow", "digits", preset=preset)
    train = run.train
    assert (train.lr, train.betas, train.weight_decay) == (1e-4, (0.9, 0.95), 1e-4)
    assert train.warmup_steps_for(steps_per_epoch=250) == 250

    def lr(step: int) -> float:
        return warmup_cosine(step, train.lr, 250, 1000, train.min_lr_ratio, train.warmup_start_ratio)

    assert lr(-1) == pytest.approx(1e-6)  # where the line of the warm-up starts
    assert lr(0) == pytest.approx(1e-6 + (1e-4 - 1e-6) / 250)
    assert lr(249) == lr(250) == pytest.approx(1e-4) == max(lr(step) for step in range(1000))
    assert lr(250 + 375) == pytest.approx(1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi / 2)) / 2)
    assert lr(1000) == pytest.approx(1e-6)


def test_the_runs_own_train_options_override_the_preset_recipe():
    run = make_run_config("tarflow", "digits", preset="imagenet64", train={"lr": 3e-4, "warmup_epochs": None})
    assert (run.train.lr, run.train.betas, run.train.warmup_epochs) == (3e-4, (0.9, 0.95), None)
    assert run.train.warmup_steps_for(steps_per_epoch=250) == run.train.warmup_steps
    assert make_run_config("tarflow", "digits").train.betas == (0.9, 0.999)  # the digits preset has no recipe


def test_a_trainer_warms_up_over_one_epoch(tmp_path):
    model = {**PRESETS["digits-tiny"], "attention_backend": "reference"}
    run = make_run_config("tarflow", "digits", preset="imagenet64", model=model,
                          train={"steps": 100, "batch_size": 64, "progress": False})

    trainer = Trainer(run, tmp_path)
    epoch = trainer.steps_per_epoch
    assert trainer.learning_rate(0) == pytest.approx(1e-6 + (1e-4 - 1e-6) / epoch)
    assert trainer.learning_rate(epoch - 1) == pytest.approx(1e-4)
    assert trainer.learning_rate(epoch) == pytest.approx(1e-4)
    assert trainer.learning_rate(epoch + 1) < 1e-4
    group = trainer.optimizer.param_groups[0]
    assert (group["betas"], group["weight_decay"]) == ((0.9, 0.95), 1e-4)
