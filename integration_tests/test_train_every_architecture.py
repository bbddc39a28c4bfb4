"""Every registered architecture trains on digits through nfkit-core's trainer, checkpoints, reloads and samples."""

from __future__ import annotations

import json

import pytest
import torch
from shared import ARCHITECTURES, smallest_digits_preset

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.cli import main
from nfkit_core.testing import check_flow
from nfkit_core.train import Trainer, make_run_config

STEPS = 20


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def trained(request, registry, tmp_path_factory):
    """A short digits run of one architecture, with the validation bits/dim before and after."""
    arch = request.param
    preset = smallest_digits_preset(registry.architectures.get(arch))
    out = tmp_path_factory.mktemp(arch)
    run = make_run_config(arch, "digits", preset=preset, registry=registry,
                          train={"steps": STEPS, "batch_size": 32, "lr": 2e-3, "warmup_steps": 5, "progress": False,
                                 "val_every": STEPS, "sample_every": STEPS, "num_samples": 16,
                                 "val_max_examples": 96})
    trainer = Trainer(run, out, registry=registry)
    before = trainer.evaluate(trainer.val_set, 96)
    report = trainer.fit()
    return arch, trainer, before, report, out


def test_the_flow_conforms(trained):
    arch, trainer, *_ = trained
    torch.manual_seed(0)
    x, labels = next(iter(torch.utils.data.DataLoader(trainer.val_set, batch_size=4)))
    x, _ = trainer.preprocessing(x, labels, train=False)
    errors = check_flow(trainer.flow, x, perturb=0.0)
    assert errors["terms"] < 1e-4, arch


def test_training_lowers_validation_bits_per_dim(trained):
    arch, trainer, before, report, out = trained
    assert report["steps"] == STEPS
    assert report["val_bpd"] < before - 0.05, f"{arch}: {before:.3f} -> {report['val_bpd']:.3f} bits/dim"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bpd" in row for row in rows) and any("bpd" in row for row in rows)
    assert (out / "curves.png").stat().st_size > 1000


def test_stochastic_likelihoods_also_report_the_importance_weighted_bound(trained):
    arch, trainer, _, report, _ = trained
    if arch == "denseflow":  # variational dequantization and cross-unit noise: the likelihood is a bound
        assert report["eval_samples"] == trainer.config.eval_samples
        assert report["val_bpd_iw"] < report["val_bpd"] and report["test_bpd_iw"] < report["test_bpd"]
    else:  # every other flow's log_prob draws no noise: the bound is exact
        assert report["val_bpd_iw"] is None and report["eval_samples"] is None


def test_the_checkpoint_rebuilds_the_same_flow_through_the_registry(trained):
    arch, trainer, *_, out = trained
    flow = load_checkpoint(out / "checkpoint.pt")
    torch.manual_seed(1)
    x, labels = next(iter(torch.utils.data.DataLoader(trainer.val_set, batch_size=8)))
    x, _ = trainer.preprocessing(x, labels, train=False)
    trainer.eval_flow.eval()
    flow.eval()
    with torch.no_grad():
        expected = trainer.eval_flow.log_prob(x, noise=torch.Generator().manual_seed(2))
        actual = flow.log_prob(x, noise=torch.Generator().manual_seed(2))
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_nf_sample_writes_a_grid(trained, tmp_path):
    arch, *_, out = trained
    target = tmp_path / f"{arch}.png"
    assert main(["sample", str(out), "-n", "9", "--out", str(target), "--seed", "3"]) == 0
    from PIL import Image

    with Image.open(target) as image:
        assert image.size[0] >= 3 * 8 and image.size[1] >= 3 * 8


def test_nf_eval_measures_the_run(trained, tmp_path):
    arch, *_, report, out = trained
    target = tmp_path / "eval"
    code = main(["eval", str(out), "--metrics", "bpd,iwbo,fid,kid,prc,interp,speed", "-K", "4", "--num-samples", "32",
                 "--max-examples", "64", "--speed-repeats", "2", "--no-progress", "--out", str(target)])
    assert code == 0, arch
    result = json.loads((target / "eval.json").read_text())
    metrics = result["metrics"]
    assert result["architecture"] == arch and result["step"] == STEPS
    assert abs(metrics["bpd"]["value"] - report["test_bpd"]) < 0.5, arch  # 64 of the test examples, other noise
    assert metrics["bpd_iw"]["value"] <= metrics["bpd"]["value"] + 1e-9, arch
    assert metrics["FD-digits"]["value"] > 0 and metrics["FD-digits"]["protocol"]["generated"] == 32
    assert metrics["FD-digits interpolation T=0.7"]["protocol"]["pairs"] == 32
    assert metrics["parameters"]["value"] == report["parameters"]
    assert metrics["sampling latency"]["value"] > 0 and metrics["peak sampling memory"]["value"] is not None, arch
    assert (target / "interpolation_T1.png").stat().st_size > 200
