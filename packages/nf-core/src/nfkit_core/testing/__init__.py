"""Test helpers for nf and its plugins: the conformance suite and the reference fixtures."""

from nfkit_core.testing.conformance import check_flow, check_transform
from nfkit_core.testing.fixtures import load_reference_fixture, reference_fixture_dir

__all__ = ["check_flow", "check_transform", "load_reference_fixture", "reference_fixture_dir"]
