"""Shared test settings of nfkit-glow-maf."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test on one CPU thread: the tensors are tiny, and several OpenMP threads on a busy machine spend more
    time waiting for each other than computing (a conformance check of a small Glow took 11 s instead of 0.4 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
