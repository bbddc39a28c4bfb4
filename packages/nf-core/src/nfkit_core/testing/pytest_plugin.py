"""nf's pytest plugin: the settings every nf package's tests share.

A package's tests use it by naming it in their top-level ``conftest.py``::

    pytest_plugins = ["nfkit_core.testing.pytest_plugin"]

It is not registered through the ``pytest11`` entry point on purpose: its fixture applies to every test of the
session, which a user's own test suite should not get merely by installing nfkit-core.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

__all__ = ["one_thread"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run each test on one CPU thread: the tensors of tests are tiny, and OpenMP threads competing for a small or
    busy machine's cores spend more time waiting for each other than computing (a conformance check of a small Glow
    took 11 s instead of 0.4 s on two busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
