"""Fixtures shared by nfkit-core's tests."""

from __future__ import annotations

import pytest
import torch

import nfkit_core.testing.tiny as tiny
from nfkit_core.plugins import PluginManager


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test on one CPU thread: the tensors are tiny, and OpenMP threads competing for a small machine's cores
    spend more time waiting for each other than computing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def registry():
    """nfkit-core's built-ins and the tiny test architecture of :mod:`nfkit_core.testing.tiny`, no installed plugins."""
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    return manager.registry
