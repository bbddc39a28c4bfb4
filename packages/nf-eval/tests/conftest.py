"""Fixtures of nfkit-eval's tests: a registry with nfkit-core's built-ins, the tiny test architecture and nfkit-eval,
and a short digits run of the tiny flow."""

from __future__ import annotations

import pytest

import nfkit_core.plugins.manager as manager_module
import nfkit_core.testing.tiny as tiny
import nfkit_eval.plugin
from nfkit_core.plugins import PluginManager

pytest_plugins = ["nfkit_core.testing.pytest_plugin"]


def make_manager(*extra) -> PluginManager:
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    manager.register(nfkit_eval.plugin, "nfkit-eval")
    for module, name in extra:
        manager.register(module, name)
    return manager


@pytest.fixture(name="make_manager")
def make_manager_fixture():
    """``make_manager(*(module, name))``: a plugin manager with the test registrations and the given plugins."""
    return make_manager


@pytest.fixture
def registry(monkeypatch):
    """The registry every lookup of this test sees (also through ``get_registry()``)."""
    manager = make_manager()
    monkeypatch.setattr(manager_module, "_manager", manager)
    return manager.registry


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A 60-step run of the tiny flow on digits (uniform dequantization outside the flow)."""
    from nfkit_core.train import Trainer, make_run_config

    registry = make_manager().registry
    out = tmp_path_factory.mktemp("run") / "digits"
    run = make_run_config("tiny", "digits", registry=registry,
                          train={"steps": 60, "batch_size": 64, "lr": 3e-3, "warmup_steps": 5, "progress": False,
                                 "val_every": 1000, "sample_every": 1000, "num_samples": 4, "eval_samples": 1})
    Trainer(run, out, registry=registry).fit()
    return out
