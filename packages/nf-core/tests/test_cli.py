"""The ``nf`` command line: ``nf train`` (start, resume, --help, --config, --set), ``nf sample``, and their errors."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from PIL import Image

import nfkit_core.plugins.manager as manager_module
import nfkit_core.testing.tiny as tiny
from nfkit_core import NormalizingFlow, Sequential, Transform
from nfkit_core.cli import main
from nfkit_core.plugins import ArchitectureSpec, PluginManager, hookimpl

DIGITS = ["--set", "data.val_fraction=0.45", "--set", "data.test_fraction=0.45"]
SHORT = ["--set", "progress=false", "--set", "batch_size=32", "--set", "val_every=1000", "--set", "sample_every=1000"]


class GuidanceShift(Transform):
    """An identity layer with a sampling option, as TarFlow's blocks have guidance: its inverse shifts by
    ``guidance``."""

    inverse_options = ("guidance",)

    def forward(self, x, context=None):
        return x, x.new_zeros(x.shape[0])

    def inverse(self, z, context=None, *, guidance=0.0, **options):
        return z + guidance, z.new_zeros(z.shape[0])


class GuidedFlow(NormalizingFlow):
    """The tiny flow behind a :class:`GuidanceShift` (a named constructor, as TarFlow's)."""

    def __init__(self, flow):
        steps = Sequential({"guidance": GuidanceShift(), **dict(flow.transform.transforms)})
        super().__init__(steps, flow.prior, flow.dequantizer, flow.data_shape)


def build_guided(config, data):
    return GuidedFlow(tiny.build_tiny(config, data))


@hookimpl
def register_guided(architectures):
    architectures.add(ArchitectureSpec("guided", tiny.TinyConfig, build_guided, "tiny with a guidance knob"))


@pytest.fixture
def nf(monkeypatch, capsys):
    """Run ``nf`` in-process with nfkit-core's built-ins and two test architectures; returns (exit code, out, err)."""
    guided = types.ModuleType("guided_plugin")
    guided.nf_register_architectures = register_guided
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    manager.register(guided, "nf-guided")
    monkeypatch.setattr(manager_module, "_manager", manager)

    def run(*argv):
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_every_command_has_help(nf, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "sample", "plugins"))
    for command in ("sample", "plugins", "data"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: nf " + command in capsys.readouterr().out
    code, out, _ = nf("train", "--help")
    assert code == 0 and "usage: nf train" in out
    assert "architectures: guided, tiny" in out
    assert "datasets: cifar10, converted, digits, image-folder, imagenet-npz, tabular, toy2d" in out
    assert "train.steps: int = 1000" in out and "train.grad_clip: float | None = None" in out
    assert "data options of dataset 'digits'" in out


def test_train_help_lists_the_options_of_the_architecture_and_dataset(nf):
    code, out, _ = nf("train", "--arch", "tiny", "--data", "toy2d", "--help")
    assert code == 0
    assert "model options of architecture 'tiny' (a small coupling flow for nfkit-core's own tests):" in out
    assert "model.hidden: int = 8\n      width of the conditioner networks." in out
    assert "model.dequantize: bool = False" in out
    assert "presets (--preset NAME):\n    digits: hidden=12" in out
    assert "data.distribution: str = 'moons'" in out and "one of ``moons``, ``circles``" in out


def test_unknown_names_list_the_available_ones(nf):
    code, _, err = nf("train", "--arch", "glow", "--out", "x")
    assert code == 2 and "nf train: error: unknown architecture 'glow'; available: guided, tiny" in err
    code, _, err = nf("train", "--arch", "tiny", "--data", "mnist", "--out", "x")
    assert code == 2 and ("unknown dataset 'mnist'; available: cifar10, converted, digits, image-folder, "
                          "imagenet-npz, tabular, toy2d") in err
    code, _, err = nf("train", "--out", "x")
    assert code == 2 and "choose an architecture with --arch NAME; available: guided, tiny" in err
    code, _, err = nf("train", "--arch", "tiny")
    assert code == 2 and "choose a run folder with --out DIR" in err


def test_bad_set_options_are_named(nf, tmp_path):
    out = tmp_path / "run"
    cases = {
        "steps": "--set expects key=value, got 'steps'",
        "model.width=3": "unknown model option(s) ['width']; known: dequantize, hidden",
        "seed=1": "'seed' is an option of data and train; write data.seed or train.seed",
        "speed=1": "'speed' is no option; known options:",
        "optim.lr=1": "unknown section 'optim'; sections: model, data, train",
        "train.lr=fast": "train.lr expects float, got 'fast'",
    }
    for assignment, message in cases.items():
        code, _, err = nf("train", "--arch", "tiny", "--data", "toy2d", "--out", out, "--set", assignment)
        assert code == 2 and message in err, (assignment, err)
    assert not out.exists()


def test_train_resume_and_sample_from_the_command_line(nf, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('arch = "tiny"\ndataset = "digits"\n\n[model]\nhidden = 6\n\n[train]\nsteps = 3\nlr = 0.002\n'
                      "num_samples = 12\n")
    run = tmp_path / "run"
    code, out, err = nf("train", "--config", config, "--out", run, *DIGITS, *SHORT, "--set", "hidden=4")
    assert code == 0, err
    assert f"training tiny (preset 'digits') on digits for 3 steps on 1 x cpu, writing to {run}" in out
    report = json.loads((run / "report.json").read_text())
    assert f"bits/dim train {report['train_bpd']:.4f}" in out and report["steps"] == 3
    stored = json.loads((run / "run.json").read_text())
    assert stored["model_config"] == {"hidden": 4, "dequantize": False}  # --set beats the file, which beats preset
    assert stored["train_config"]["lr"] == 0.002 and stored["train_config"]["batch_size"] == 32
    with Image.open(run / "samples" / "step_000003.png") as grid:
        assert grid.size == (1 + 4 * 33, 1 + 3 * 33)  # 12 digits enlarged to 32 x 32, padding 1

    code, _, err = nf("train", "--arch", "tiny", "--out", run)
    assert code == 2 and f"{run} already holds a run (checkpoint.pt); continue it with --resume" in err
    code, _, err = nf("train", "--resume", run, "--arch", "tiny")
    assert code == 2 and "--arch cannot be combined with it" in err
    code, out, err = nf("train", "--resume", run, "--set", "steps=5")
    assert code == 0 and "resuming tiny (preset 'digits') on digits at step 3 of 5 on 1 x cpu" in out, err
    assert json.loads((run / "report.json").read_text())["steps"] == 5

    code, out, err = nf("sample", run, "-n", "6", "--out", tmp_path / "samples.png", "--temperature", "0.7")
    assert code == 0 and "wrote 6 samples" in out and "(step 5)" in out
    with Image.open(tmp_path / "samples.png") as grid:
        assert grid.size == (1 + 3 * 33, 1 + 2 * 33)
    code, _, _ = nf("sample", run / "checkpoint.pt", "-n", "5", "--seed", "3", "--out", tmp_path / "a.npy")
    code, _, _ = nf("sample", run, "-n", "5", "--seed", "3", "--out", tmp_path / "b.npy")
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (5, 1, 8, 8) and np.array_equal(a, b)

    code, _, err = nf("sample", run, "--class", "3", "--out", tmp_path / "c.png")
    assert code == 2 and "--class needs a class-conditional flow" in err
    code, _, err = nf("sample", run, "--out", tmp_path / "c.jpg")
    assert code == 2 and "--out must end in .png or .npy, got 'c.jpg'" in err
    code, _, err = nf("sample", tmp_path / "nowhere.pt", "--out", tmp_path / "c.png")
    assert code == 2 and "no checkpoint at" in err
    code, _, err = nf("sample", run, "--set", "guidance=2", "--out", tmp_path / "c.png")
    assert code == 2 and "NormalizingFlow.sample() takes no option(s) ['guidance'] through --set; its extra " \
        "options: denoise" in err


def test_class_conditional_sampling_and_extra_sample_options(nf, tmp_path):
    run = tmp_path / "guided"
    code, _, err = nf("train", "--arch", "guided", "--data", "digits", "--out", run, *DIGITS, *SHORT,
                      "--set", "steps=2", "--set", "class_conditional=true", "--set", "label_dropout=0.1")
    assert code == 0, err
    code, _, err = nf("sample", run, "-n", "4", "--class", "3", "--seed", "1", "--out", tmp_path / "plain.npy")
    assert code == 0, err
    code, _, err = nf("sample", run, "-n", "4", "--class", "3", "--seed", "1", "--set", "guidance=2.5",
                      "--out", tmp_path / "guided.npy")
    assert code == 0, err
    plain, guided = np.load(tmp_path / "plain.npy"), np.load(tmp_path / "guided.npy")
    assert np.allclose(guided - plain, 2.5)
    code, _, err = nf("sample", run, "--class", "10", "--out", tmp_path / "x.png")
    assert code == 2 and "--class must lie in 0..9, got 10" in err
    code, _, err = nf("sample", run, "--set", "scale=2", "--out", tmp_path / "x.png")
    assert code == 2 and "GuidedFlow.sample() takes no option(s) ['scale'] through --set; its extra options: " \
        "denoise, guidance" in err
    code, _, err = nf("sample", run, "--set", "temperature=2", "--out", tmp_path / "x.png")
    assert code == 2 and "takes no option(s) ['temperature']" in err


def test_vector_samples_are_plotted(nf, tmp_path):
    run = tmp_path / "toy"
    code, _, err = nf("train", "--arch", "tiny", "--data", "toy2d", "--out", run, *SHORT, "--set", "steps=2",
                      "--set", "data.train_size=64", "--set", "eval_size=16")
    assert code == 0, err
    code, _, err = nf("sample", run, "-n", "50", "--out", tmp_path / "points.png")
    assert code == 0, err
    with Image.open(tmp_path / "points.png") as figure:
        assert figure.size == (400, 400)


def test_config_file_errors(nf, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3")
    code, _, err = nf("train", "--arch", "tiny", "--config", bad, "--out", tmp_path / "r")
    assert code == 2 and f"{bad} is not valid TOML" in err
    bad.write_text("[optimizer]\nlr = 1\n")
    code, _, err = nf("train", "--arch", "tiny", "--config", bad, "--out", tmp_path / "r")
    assert code == 2 and "unknown entries ['optimizer']" in err
    code, _, err = nf("train", "--arch", "tiny", "--config", tmp_path / "none.toml", "--out", tmp_path / "r")
    assert code == 2 and "config file" in err and "none.toml not found" in err


def test_plugins_lists_the_registered_architectures(nf):
    code, out, _ = nf("plugins")
    assert code == 0 and "nf-testing" in out and "architecture tiny" in out and "dataset digits" in out
    assert "command train" in out and "command sample" in out
