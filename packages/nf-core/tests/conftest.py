"""Fixtures shared by nfkit-core's tests."""

from __future__ import annotations

import pytest

import nfkit_core.testing.tiny as tiny
from nfkit_core.plugins import PluginManager

pytest_plugins = ["nfkit_core.testing.pytest_plugin"]


@pytest.fixture(scope="module")
def registry():
    """nfkit-core's built-ins and the tiny test architecture of :mod:`nfkit_core.testing.tiny`, no installed plugins."""
    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    return manager.registry
