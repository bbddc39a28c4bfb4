"""``nf eval``: the reports it writes, several runs side by side, a plugin's metric, and its errors on bad input."""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import torch

import nfkit_core.plugins.manager as manager_module
from nfkit_core.checkpoint import read_checkpoint, save_checkpoint
from nfkit_core.cli import main
from nfkit_core.plugins import MetricSpec, hookimpl
from nfkit_eval import Measurement, Report

FAST = ["-K", "4", "--no-progress"]


def constant_metric(context):
    """A third-party metric: the number of held-out examples, and 42; and a number that cannot be computed."""
    return [Measurement("answer", 42.0, protocol={"examples": len(context.data.held_out)}),
            Measurement("diverged", float("inf"), float("nan"), "nats")]


@hookimpl
def nf_register_metrics(metrics):
    metrics.add(MetricSpec("answer", constant_metric, "the answer to everything, from a test plugin"))


@pytest.fixture
def nf(monkeypatch, capsys, make_manager):
    """Run ``nf`` in-process with nfkit-core, the tiny architecture, nfkit-eval and a test metric plugin."""
    plugin = types.ModuleType("answer_plugin")
    plugin.nf_register_metrics = nf_register_metrics
    monkeypatch.setattr(manager_module, "_manager", make_manager((plugin, "nf-answer")))

    def run(*argv):
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    import nfkit_core.testing.tiny as tiny
    from nfkit_core.plugins import PluginManager
    """A short run of the tiny flow on a 4-feature tabular set (continuous: a deterministic likelihood)."""
    from nfkit_core.train import Trainer, make_run_config

    root = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, 4))
    for split, n in (("train", 400), ("val", 100), ("test", 100)):
        np.save(root / f"{split}.npy", (rng.normal(size=(n, 4)) @ mixing).astype(np.float32))
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    registry = manager.registry
    out = tmp_path_factory.mktemp("run") / "tabular"
    run = make_run_config("tiny", "tabular", data={"root": str(root)}, registry=registry,
                          train={"steps": 30, "batch_size": 50, "progress": False, "val_every": 1000,
                                 "sample_every": 1000, "num_samples": 4, "eval_samples": 1})
    Trainer(run, out, registry=registry).fit()
    return out, root


def test_nf_eval_writes_every_default_image_metric_with_its_protocol(nf, digits_run, tmp_path):
    out = tmp_path / "eval"
    code, stdout, _ = nf("eval", digits_run, "--out", out, *FAST)
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    metrics = report["metrics"]
    assert list(metrics) == ["bpd", "bpd_iw", "FD-digits", "KD-digits", "precision", "recall",
                             "FD-digits interpolation T=1", "FD-digits interpolation T=0.7"]
    assert report["architecture"] == "tiny" and report["split"] == "test" and report["step"] == 60
    assert report["versions"]["nfkit-eval"] and report["versions"]["torch-fidelity"]
    bpd, iw = metrics["bpd"], metrics["bpd_iw"]
    assert bpd["protocol"]["examples"] == 180 and bpd["protocol"]["preprocessing"] == "dequantize"
    assert iw["protocol"]["K"] == 4 and iw["value"] < bpd["value"]
    # the trainer's report measured the same single-sample bound with other noise draws
    trained = json.loads((digits_run / "report.json").read_text())
    assert abs(bpd["value"] - trained["test_bpd"]) < 3 * bpd["stderr"]
    fd = metrics["FD-digits"]
    assert fd["value"] > 0 and fd["protocol"]["generated"] == 180 and fd["protocol"]["reference"] == 180
    assert fd["protocol"]["classifier_held_out_accuracy"] >= 0.95
    kd = metrics["KD-digits"]
    assert kd["protocol"]["subset_size"] == 180 and kd["protocol"]["subsets"] == "1: the whole sets"
    assert kd["stderr"] is None
    assert 0 <= metrics["precision"]["value"] <= 1 and 0 <= metrics["recall"]["value"] <= 1
    assert metrics["FD-digits interpolation T=1"]["protocol"]["pairs"] == 180
    for name in ("samples", "nearest_neighbours", "interpolation T=1", "interpolation T=0.7"):
        assert (out / report["figures"][name].rsplit("/", 1)[-1]).stat().st_size > 200
    assert "| FD-digits |" in (out / "eval.md").read_text() and "FD-digits" in stdout
    assert list((digits_run / "eval_cache").glob("classifier-digits-*.pt"))
    assert not list(tmp_path.glob(".*partial"))
    assert Report.from_dict(report).to_dict() == report


def test_nf_eval_puts_runs_side_by_side(nf, digits_run, tabular_run, tmp_path):
    code, stdout, _ = nf("eval", digits_run, tabular_run[0], "--metrics", "bpd", "--out", tmp_path, *FAST)
    assert code == 0
    table = (tmp_path / "eval.md").read_text()
    assert "| bpd (bits/dim) ↓ |" in table and table.count("tiny (") == 2
    assert (tmp_path / "digits" / "eval.json").exists() and (tmp_path / "tabular" / "eval.json").exists()


def test_a_deterministic_flow_and_the_tabular_metrics(nf, tabular_run, tmp_path):
    run, _ = tabular_run
    code, _, _ = nf("eval", run, "--out", tmp_path, "-K", "16", "--no-progress")
    assert code == 0
    metrics = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert list(metrics) == ["bpd", "bpd_iw", "KS mean", "KS max", "real-vs-generated AUC"]
    assert metrics["bpd_iw"]["value"] == metrics["bpd"]["value"]
    assert metrics["bpd"]["protocol"]["likelihood"] == "exact (deterministic flow)"
    assert 0 < metrics["KS mean"]["value"] <= metrics["KS max"]["value"] <= 1
    assert 0.5 <= metrics["real-vs-generated AUC"]["value"] <= 1


def test_a_plugin_metric_appears_in_the_help_and_runs(nf, digits_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "answer   the answer to everything, from a test plugin [any; " in capsys.readouterr().out
    code, _, _ = nf("eval", digits_run, "--metrics", "bpd,answer", "--out", tmp_path, *FAST)
    assert code == 0
    report = json.loads((tmp_path / "eval.json").read_text(), parse_constant=refuse_non_standard_json)
    metrics = report["metrics"]
    assert metrics["answer"]["value"] == 42.0 and metrics["answer"]["protocol"]["examples"] == 180
    assert metrics["answer"]["reason"] is None
    assert metrics["diverged"] == {"value": None, "stderr": None, "unit": "nats", "lower_is_better": True,
                                   "protocol": {}, "reason": "not computable: the value came out inf; the standard "
                                                             "error came out nan"}
    assert Report.from_dict(report).to_dict() == report
    assert "| diverged | n/a (not computable: the value came out inf; the standard error came out nan) | nats |" in (
        tmp_path / "eval.md").read_text().splitlines()


def refuse_non_standard_json(constant):
    raise AssertionError(f"eval.json holds {constant}, which is not JSON")


def test_a_measurement_keeps_the_reason_it_has_no_value():
    assert Measurement("memory", None, reason="no fresh process").to_dict()["reason"] == "no fresh process"
    noisy = Measurement("bpd", 1.5, float("-inf"))
    assert (noisy.value, noisy.stderr, noisy.reason) == (1.5, None, "the standard error came out -inf")
    assert noisy.formatted() == "1.5000"


def assert_one_line_error(result, *fragments):
    code, _, err = result
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("nf eval: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_input_gives_one_clear_line_and_writes_nothing(nf, digits_run, tabular_run, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    assert_one_line_error(nf("eval", digits_run, "--metrics", "kid", "--kid-subset-size", "5000", "--out", out,
                             *FAST), "KID's subset size is 5000", "--kid-subset-size")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("NFKIT_INCEPTION_WEIGHTS", raising=False)
    assert_one_line_error(nf("eval", digits_run, "--metrics", "fid", "--extractor", "inception", "--out", out, *FAST),
                          "pt_inception-2015-12-05-6726825d.pth", "--inception-weights")
    assert_one_line_error(nf("eval", digits_run, "--metrics", "tabular", "--out", out), "applies to vectors")
    assert_one_line_error(nf("eval", digits_run, "--metrics", "nothing", "--out", out), "unknown metric 'nothing'",
                          "available: answer, bpd")
    assert_one_line_error(nf("eval", tmp_path / "missing", "--out", out), "no run folder or checkpoint")

    foreign = read_checkpoint(digits_run)
    foreign["architecture"] = "unheard-of"
    save_checkpoint(foreign, tmp_path / "foreign.pt")
    assert_one_line_error(nf("eval", tmp_path / "foreign.pt", "--out", out), "architecture 'unheard-of'",
                          "no installed plugin provides")

    run, root = tabular_run
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    try:
        assert_one_line_error(nf("eval", run, "--out", out), "data of this run cannot be found", "data.root=PATH")
        code, _, _ = nf("eval", run, "--set", f"data.root={moved}", "--metrics", "bpd", "--out", out, *FAST)
        assert code == 0 and (out / "eval.json").exists()
    finally:
        shutil.copytree(moved, root)
    assert not list(tmp_path.glob(".*partial"))


def test_a_failing_metric_leaves_no_report_behind(nf, digits_run, tmp_path):
    out = tmp_path / "eval"
    code, _, _ = nf("eval", digits_run, "--metrics", "bpd,fid,kid", "--kid-subset-size", "999", "--out", out,
                    *FAST)
    assert code == 2
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    assert torch.get_num_threads() >= 1
