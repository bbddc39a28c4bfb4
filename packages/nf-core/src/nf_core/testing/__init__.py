"""Test helpers for nf and its plugins: the conformance suite and the reference fixtures."""

from nf_core.testing.fixtures import load_reference_fixture, reference_fixture_dir

__all__ = ["load_reference_fixture", "reference_fixture_dir"]
