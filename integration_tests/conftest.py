"""Fixtures of the cross-package tests."""

from __future__ import annotations

import pytest

from nfkit_core.plugins import PluginManager


@pytest.fixture(scope="session")
def registry():
    """A registry filled by every installed plugin."""
    return PluginManager().registry
