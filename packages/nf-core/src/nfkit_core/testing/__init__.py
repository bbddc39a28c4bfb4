"""Test helpers for nf and its plugins: the conformance suite and the reference fixtures.

Also here: :mod:`nfkit_core.testing.pytest_plugin` (the pytest settings nf's packages share; name it in a
``conftest.py``) and :mod:`nfkit_core.testing.imports` (a package's import graph, for tests of its layering).
"""

from nfkit_core.testing.conformance import check_flow, check_transform
from nfkit_core.testing.fixtures import load_fixture, parity_fixture_paths, reference_fixture_dir

__all__ = ["check_flow", "check_transform", "load_fixture", "parity_fixture_paths", "reference_fixture_dir"]
