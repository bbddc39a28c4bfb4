"""Fixtures shared by nfkit-distill's tests."""

pytest_plugins = ["nfkit_core.testing.pytest_plugin"]
