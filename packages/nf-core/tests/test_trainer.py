"""The trainer: schedule, weight average, what a run writes, seeds, exact resume, the NaN stop, option checks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

import nfkit_core.testing.tiny as tiny
from nfkit_core.checkpoint import read_checkpoint
from nfkit_core.plugins import ArchitectureSpec, PluginManager, UnknownNameError
from nfkit_core.train import (
    EMA,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    cpu_threads,
    make_run_config,
    start_process,
    warmup_cosine,
)

SMALL_DIGITS = {"val_fraction": 0.45, "test_fraction": 0.45}  # 179 training images: 5 batches of 32 per epoch
QUIET = {"progress": False, "val_every": 1000, "sample_every": 1000}


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_warmup_then_cosine_schedule():
    lrs = [warmup_cosine(step, 1.0, 4, 14, min_lr_ratio=0.1) for step in range(15)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0  # the cosine starts at the peak
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert lrs[14] == pytest.approx(0.1) and lrs[20 - 6] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def test_ema_averages_weights_with_a_warm_up_and_copies_buffers():
    model = torch.nn.BatchNorm1d(2)
    ema = EMA(model, decay=0.75)
    assert [ema.decay_at(n) for n in (0, 1, 10, 100)] == [0.1, 2 / 11, 0.55, 0.75]
    with torch.no_grad():
        model.weight.fill_(5.0)
        model.running_mean.fill_(3.0)
    ema.update(model, num_updates=100)
    assert torch.allclose(ema.model.weight, torch.full((2,), 0.75 * 1.0 + 0.25 * 5.0))
    assert torch.equal(ema.model.running_mean, torch.full((2,), 3.0))
    ema.update(model, num_updates=0)
    assert torch.allclose(ema.model.weight, torch.full((2,), 0.1 * 2.0 + 0.9 * 5.0))
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_a_run_writes_metrics_samples_curves_checkpoint_and_report(registry, tmp_path, capsys):
    train = {"steps": 60, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5, "log_every": 10, "val_every": 30,
             "sample_every": 30, "num_samples": 20, "checkpoint_every": 1000, "progress": False}
    run = make_run_config("tiny", "digits", data=SMALL_DIGITS, train=train, registry=registry)
    trainer = Trainer(run, tmp_path, registry=registry)
    before = trainer.evaluate(trainer.val_set)
    report = trainer.fit()

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    val_rows = [r for r in rows if "val_bpd" in r]
    assert [r["step"] for r in train_rows] == [10, 20, 30, 40, 50, 60]
    assert [r["step"] for r in val_rows] == [30, 60]
    # bits/dim of a step = nats / (D ln 2) - log2(bin width): the two logged numbers agree.
    for r in train_rows:
        assert r["bpd"] == pytest.approx(r["loss"] / (64 * math.log(2)) - math.log2(2 / 17), rel=1e-5)
    assert train_rows[-1]["lr"] == pytest.approx(warmup_cosine(59, 3e-3, 5, 60))
    assert val_rows[-1]["val_bpd"] < before - 0.3  # it learned something

    assert report["val_bpd"] == pytest.approx(val_rows[-1]["val_bpd"])  # the full split, same fixed noise
    assert report["test_bpd"] == pytest.approx(trainer.evaluate(trainer.load_split("test")))
    assert report["preset"] == "digits" and report["weights"] == "model" and report["preprocessing"] == "dequantize"
    assert report["train_bpd"] == train_rows[-1]["bpd"] and report["steps"] == 60
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert f"validation {report['val_bpd']:.4f}, test {report['test_bpd']:.4f}" in capsys.readouterr().out

    for step in (30, 60):
        with Image.open(tmp_path / "samples" / f"step_{step:06d}.png") as grid:
            assert grid.size == (1 + 5 * 33, 1 + 4 * 33)  # 20 digits enlarged to 32 x 32, 5 per row, padding 1
    with Image.open(tmp_path / "curves.png") as curves:
        assert curves.size == (900, 350)
    state = read_checkpoint(tmp_path)
    assert state["step"] == 60 and states_equal(state["model"], trainer.flow.state_dict())
    assert json.loads((tmp_path / "run.json").read_text())["train_config"]["steps"] == 60


def test_the_same_seed_gives_the_same_weights(registry, tmp_path):
    def train(seed, folder):
        run = make_run_config("tiny", "toy2d", data={"train_size": 128, "eval_size": 32},
                              train={"steps": 6, "batch_size": 16, "seed": seed, **QUIET}, registry=registry)
        trainer = Trainer(run, tmp_path / folder, registry=registry)
        trainer.fit()
        return trainer.flow.state_dict()

    first, again, other = train(1, "a"), train(1, "b"), train(2, "c")
    assert states_equal(first, again) and not states_equal(first, other)


def test_resume_continues_exactly(registry, tmp_path):
    """2k steps straight == k steps, a checkpoint, a fresh process state, and k more: bit-identical weights, weight
    average and optimizer state, and the same metrics. k = 6 stops inside the second epoch (5 batches per epoch),
    and the run uses every source of randomness: data order, dequantization, flips, label dropout."""
    train = {"steps": 12, "batch_size": 32, "warmup_steps": 3, "ema_decay": 0.9, "class_conditional": True,
             "label_dropout": 0.3, "hflip": True, "checkpoint_every": 1000, "log_every": 2, **QUIET}
    run = make_run_config("tiny", "digits", data=SMALL_DIGITS, train=train, registry=registry)
    straight = Trainer(run, tmp_path / "straight", registry=registry)
    straight.fit()

    first = Trainer(run, tmp_path / "resumed", registry=registry)
    assert first.fit(until=6) is None
    torch.manual_seed(1234)  # the caller's global RNG: neither building a Trainer nor training touches it
    callers = torch.get_rng_state()
    resumed = Trainer.resume(tmp_path / "resumed", registry=registry)
    assert resumed.step == 6 and torch.equal(torch.get_rng_state(), callers)
    resumed.fit()
    assert torch.equal(torch.get_rng_state(), callers)
    # The run's own stream of the global generators (which layers such as dropout draw from) continued exactly.
    assert torch.equal(read_checkpoint(tmp_path / "resumed")["rng"][0]["torch"],
                       read_checkpoint(tmp_path / "straight")["rng"][0]["torch"])

    assert states_equal(straight.flow.state_dict(), resumed.flow.state_dict())
    assert states_equal(straight.ema.state_dict(), resumed.ema.state_dict())
    a, b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert a["state"].keys() == b["state"].keys()
    assert all(states_equal(a["state"][i], b["state"][i]) for i in a["state"])

    def metrics(folder):
        rows = [json.loads(line) for line in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "samples_per_s"} for row in rows]

    assert metrics("resumed") == metrics("straight") and len(metrics("straight")) == 7


def test_resume_drops_metrics_logged_after_the_checkpoint(registry, tmp_path):
    run = make_run_config("tiny", "toy2d", data={"train_size": 64, "eval_size": 16},
                          train={"steps": 8, "batch_size": 16, "log_every": 1, "checkpoint_every": 4, **QUIET},
                          registry=registry)
    Trainer(run, tmp_path, registry=registry).fit(until=6)  # checkpoints at 4 and 6
    state = read_checkpoint(tmp_path)
    state["step"] = 4  # as if the process had died after logging steps 5 and 6
    from nfkit_core.checkpoint import save_checkpoint

    save_checkpoint(state, tmp_path / "checkpoint.pt")
    Trainer.resume(tmp_path, registry=registry)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resume_can_extend_a_run(registry, tmp_path):
    run = make_run_config("tiny", "toy2d", data={"train_size": 64, "eval_size": 16},
                          train={"steps": 4, "batch_size": 16, **QUIET}, registry=registry)
    Trainer(run, tmp_path, registry=registry).fit()
    longer = Trainer.resume(tmp_path, {"steps": 6}, registry=registry)
    assert longer.config.steps == 6 and longer.step == 4
    assert longer.fit()["steps"] == 6
    with pytest.raises(ValueError, match=r"unknown train option\(s\) \['stepz'\]"):
        Trainer.resume(tmp_path, {"stepz": 8}, registry=registry)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(registry, tmp_path):
    run = make_run_config("tiny", "toy2d", data={"train_size": 256, "eval_size": 16},
                          train={"steps": 20, "batch_size": 32, "lr": 1e3, "warmup_steps": 1, "checkpoint_every": 1,
                                 **QUIET}, registry=registry)
    trainer = Trainer(run, tmp_path, registry=registry)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at step 2: loss nan.*last good "
                                                 r"checkpoint, .*checkpoint.pt \(step 1\), is kept"):
        trainer.fit()
    state = read_checkpoint(tmp_path)
    assert state["step"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())
    assert all(torch.isfinite(p).all() for p in trainer.flow.parameters())  # the bad update was not applied
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "non-finite loss" and last["step"] == 2


def test_a_flow_with_its_own_dequantizer_gets_integer_levels(registry, tmp_path):
    run = make_run_config("tiny", "digits", model={"dequantize": True}, data=SMALL_DIGITS,
                          train={"steps": 2, "batch_size": 32, **QUIET}, registry=registry)
    trainer = Trainer(run, tmp_path, registry=registry)
    assert trainer.preprocessing.mode == "levels" and trainer.preprocessing.log_bin_width == 0.0
    seen = []
    trainer.flow.dequantizer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    trainer.fit()
    assert all(torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= 16 for x in seen)


def test_class_conditional_runs_pass_labels_and_tell_the_architecture(registry, tmp_path):
    run = make_run_config("tiny", "digits", data=SMALL_DIGITS,
                          train={"steps": 1, "batch_size": 32, "class_conditional": True, **QUIET}, registry=registry)
    trainer = Trainer(run, tmp_path, registry=registry)
    assert trainer.info.num_classes == 10 and trainer.flow.prior.num_classes == 11
    unconditional = Trainer(make_run_config("tiny", "digits", data=SMALL_DIGITS, train={"batch_size": 32, **QUIET},
                                            registry=registry), tmp_path / "u", registry=registry)
    assert unconditional.info.num_classes == 0


def test_options_that_cannot_work_are_errors(registry, tmp_path):
    with pytest.raises(UnknownNameError, match="unknown architecture 'glowy'; available: tiny"):
        make_run_config("glowy", "digits", registry=registry)
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnist'; available: cifar10, converted, digits"):
        make_run_config("tiny", "mnist", registry=registry)
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['width'\]; known: dequantize, hidden"):
        make_run_config("tiny", "digits", model={"width": 3}, registry=registry)
    with pytest.raises(ValueError, match="train.lr expects float, got 'fast'"):
        make_run_config("tiny", "digits", train={"lr": "fast"}, registry=registry)
    with pytest.raises(ValueError, match="train.label_dropout needs train.class_conditional=true"):
        make_run_config("tiny", "digits", train={"label_dropout": 0.1}, registry=registry)
    with pytest.raises(ValueError, match="train.precision must be one of auto, fp32, bf16"):
        make_run_config("tiny", "digits", train={"precision": "fp16"}, registry=registry)
    toy = make_run_config("tiny", "toy2d", train={"class_conditional": True}, registry=registry)
    with pytest.raises(ValueError, match="dataset 'toy2d' has no class labels"):
        Trainer(toy, tmp_path, registry=registry)
    big = make_run_config("tiny", "toy2d", data={"train_size": 10}, train={"batch_size": 16}, registry=registry)
    with pytest.raises(ValueError, match="has 10 examples, fewer than one batch of train.batch_size=16"):
        Trainer(big, tmp_path, registry=registry)


def test_option_values_are_coerced_to_the_field_types(registry):
    run = make_run_config("tiny", "digits", train={"lr": 1, "betas": [0.5, 0.9], "grad_clip": "none"},
                          registry=registry)
    assert run.train.lr == 1.0 and isinstance(run.train.lr, float) and run.train.steps == 1000
    assert run.train.betas == (0.5, 0.9) and run.train.grad_clip is None
    with pytest.raises(ValueError, match=r"train.betas needs 2 values, got \[0.5\]"):
        make_run_config("tiny", "digits", train={"betas": [0.5]}, registry=registry)


def test_a_flow_that_declares_its_noise_gets_noise_augmentation(tmp_path):
    def build_noisy(config, data):
        flow = tiny.build_tiny(config, data)
        flow.noise_std = 0.05
        return flow

    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    registry = manager.registry
    registry.architectures.add(ArchitectureSpec("noisy", tiny.TinyConfig, build_noisy))
    run = make_run_config("noisy", "digits", data=SMALL_DIGITS, train={"batch_size": 32, **QUIET}, registry=registry)
    trainer = Trainer(run, tmp_path / "declared", registry=registry)
    assert trainer.preprocessing.mode == "noise" and trainer.preprocessing.noise_std == 0.05
    run = make_run_config("noisy", "digits", data=SMALL_DIGITS, train={"batch_size": 32, "noise_std": 0, **QUIET},
                          registry=registry)
    assert Trainer(run, tmp_path / "overridden", registry=registry).preprocessing.mode == "dequantize"


def test_bf16_autocast_trains_on_cpu_when_asked(registry, tmp_path):
    run = make_run_config("tiny", "toy2d", data={"train_size": 64, "eval_size": 16},
                          train={"steps": 3, "batch_size": 16, "precision": "bf16", **QUIET}, registry=registry)
    trainer = Trainer(run, tmp_path, registry=registry)
    seen = []
    trainer.flow.transform["coupling1"].conditioner.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    report = trainer.fit()
    assert seen[0] == torch.bfloat16  # training ran under autocast
    assert seen[-1] == torch.float32  # the final evaluation did not
    assert math.isfinite(report["val_bpd"]) and all(p.dtype == torch.float32 for p in trainer.flow.parameters())


def test_building_a_trainer_changes_nothing_process_wide(registry, tmp_path):
    run = make_run_config("tiny", "toy2d", data={"train_size": 32, "eval_size": 8},
                          train={"batch_size": 16, "cpu_threads": 2, "seed": 3, **QUIET}, registry=registry)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    Trainer(run, tmp_path, registry=registry)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)


def test_the_entry_point_sets_the_thread_count(monkeypatch):
    try:
        assert start_process(TrainConfig(cpu_threads=2, device="cpu")).world_size == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert cpu_threads(None) == 16 and cpu_threads(None, processes_per_machine=4) == 4  # a 16-core machine
    assert cpu_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # how tests and CI pin it
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert cpu_threads(None, processes_per_machine=4) == 1
