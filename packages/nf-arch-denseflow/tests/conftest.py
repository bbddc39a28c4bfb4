"""Shared test settings for nfkit-denseflow: nf's pytest plugin (one CPU thread per test)."""

pytest_plugins = ["nfkit_core.testing.pytest_plugin"]
