"""Shared test settings of nfkit-glow-maf: nf's pytest plugin (one CPU thread per test)."""

pytest_plugins = ["nfkit_core.testing.pytest_plugin"]
