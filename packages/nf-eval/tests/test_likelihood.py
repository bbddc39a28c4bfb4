"""The likelihood protocol: a deterministic flow's importance-weighted bound is its single-sample one; a stochastic
bound (uniform dequantization) is tightened by importance weighting; bits/dim account for the bin width."""

from __future__ import annotations

import math

import torch

from nfkit_core import noise
from nfkit_core.data import ArrayDataset, Preprocessing
from nfkit_core.plugins import DataInfo
from nfkit_core.testing.tiny import TinyConfig, build_tiny
from nfkit_eval import EvalContext, EvalData, EvalOptions, evaluate, load_run
from nfkit_eval.data import DiscreteLikelihood
from nfkit_eval.likelihood import likelihood_measurements


def vector_data(n: int = 40) -> EvalData:
    generator = torch.Generator().manual_seed(0)
    info = DataInfo(shape=(4,))
    held_out = ArrayDataset(torch.randn(n, 4, generator=generator), None, info)
    train = ArrayDataset(torch.randn(n, 4, generator=generator), None, info)
    return EvalData("vectors", None, "test", held_out, train, Preprocessing("continuous"), info)


def level_data(n: int = 30) -> EvalData:
    generator = torch.Generator().manual_seed(0)
    info = DataInfo(shape=(1, 4, 4), num_bins=17)
    held_out = ArrayDataset(torch.randint(0, 17, (n, 1, 4, 4), generator=generator), None, info)
    return EvalData("levels", None, "test", held_out, held_out, Preprocessing("dequantize", 17), info)


def test_a_deterministic_flow_reports_the_same_number_twice():
    data = vector_data()
    torch.manual_seed(0)
    flow = build_tiny(TinyConfig(), data.info).eval()
    single, weighted = likelihood_measurements(flow, data, importance_samples=50)
    assert single.protocol["likelihood"] == "exact (deterministic flow)"
    assert weighted.value == single.value and weighted.stderr == single.stderr
    assert weighted.protocol["K"] == 1 and "draws no noise" in weighted.protocol["note"]
    x = data.held_out.data
    expected = -flow.log_prob(x).double() / (4 * math.log(2))
    assert abs(single.value - expected.mean().item()) < 1e-6
    assert abs(single.stderr - expected.std().item() / math.sqrt(len(x))) < 1e-6


def test_importance_weighting_tightens_a_dequantized_bound(digits_run, registry):
    flow, data, _ = load_run(digits_run, registry=registry)
    single, weighted = likelihood_measurements(flow, data, importance_samples=32, sample_batch_size=8,
                                               max_examples=60)
    assert single.protocol["likelihood"] == "stochastic bound" and weighted.protocol["K"] == 32
    assert weighted.value < single.value - 0.004  # a higher log-likelihood: fewer bits/dim (fixed seeds)


def test_the_discrete_likelihood_adds_the_bin_width():
    data = level_data(4)
    torch.manual_seed(0)
    flow = build_tiny(TinyConfig(), data.info).eval()
    model = DiscreteLikelihood(flow, data.preprocessing)
    x = data.held_out.data.float()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        with noise.use(torch.Generator().manual_seed(5)):
            total = model.log_prob(x)
        y = (x + torch.rand(x.shape, generator=generator)) / 17 * 2 - 1
        expected = flow.log_prob(y) + 16 * math.log(2 / 17)
    torch.testing.assert_close(total, expected)


def test_evaluate_from_python_returns_a_report_and_writes_nothing_without_out_dir(tmp_path, registry, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = vector_data()
    torch.manual_seed(0)
    flow = build_tiny(TinyConfig(), data.info)
    report = evaluate(flow, data, metrics=["bpd", "iwbo"], options=EvalOptions(importance_samples=8, progress=False))
    assert [m.name for m in report.measurements] == ["bpd", "bpd_iw"]
    assert report["bpd_iw"].value == report["bpd"].value and report.header["dataset"] == "vectors"
    assert set(report.header["seconds"]) == {"bpd", "iwbo"}
    assert report.to_dict()["metrics"]["bpd"]["unit"] == "bits/dim"
    assert list(tmp_path.iterdir()) == []


def test_a_reference_batch_repeats_the_held_out_split_to_the_batch_size():
    data = level_data(n=30)
    context = EvalContext(build_tiny(TinyConfig(), data.info), data, EvalOptions())
    values, _ = context.reference()
    x, condition = context.reference_batch(70)
    assert x.shape == (70, 1, 4, 4) and condition is None  # an unconditional flow gets no context
    assert torch.equal(x[:30], values) and torch.equal(x[30:60], values) and torch.equal(x[60:], values[:10])
