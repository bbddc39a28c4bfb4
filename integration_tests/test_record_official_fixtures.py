"""tools/record_official_fixtures.py: its command line, and that it writes exactly the committed parity fixtures.

Re-recording needs checkouts of the official repositories, which are not part of this repository: set
``NF_OFFICIAL_CHECKOUTS`` to a folder holding ``ml-tarflow``, ``DenseFlow`` and ``survae_flows`` to run that test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nfkit_core.testing import load_fixture

ROOT = Path(__file__).resolve().parents[1]
RECORDER = ROOT / "tools" / "record_official_fixtures.py"
COMMITTED = {"tarflow_uncond_tiny.pt": "nf-arch-tarflow", "tarflow_cond_tiny.pt": "nf-arch-tarflow",
             "denseflow_tiny.pt": "nf-arch-denseflow"}


def run_recorder(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECORDER), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_same(recorded, committed, where: str = "fixture") -> None:
    if isinstance(committed, torch.Tensor):
        assert torch.equal(recorded, committed), where
    elif isinstance(committed, dict):
        assert recorded.keys() == committed.keys(), where
        for key in committed:
            assert_same(recorded[key], committed[key], f"{where}[{key!r}]")
    elif isinstance(committed, list):
        assert len(recorded) == len(committed), where
        for i, (a, b) in enumerate(zip(recorded, committed)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert recorded == committed, where


def test_the_recorder_explains_itself_and_names_what_is_missing(tmp_path):
    help_text = run_recorder("--help")
    assert help_text.returncode == 0 and "--tarflow" in help_text.stdout and "--survae" in help_text.stdout
    nothing = run_recorder()
    assert nothing.returncode == 2 and "give --tarflow and/or --denseflow" in nothing.stderr
    no_survae = run_recorder("--denseflow", str(tmp_path))
    assert no_survae.returncode == 2 and "--denseflow needs --survae" in no_survae.stderr
    wrong = run_recorder("--tarflow", str(tmp_path))
    assert wrong.returncode == 2 and "transformer_flow.py not found" in wrong.stderr


def test_committed_fixtures_are_small_and_say_where_they_come_from():
    paths = [ROOT / "packages" / package / "tests" / "fixtures" / name for name, package in COMMITTED.items()]
    assert sum(path.stat().st_size for path in paths) < 3 * 2**20
    for path in paths:
        fixture = load_fixture(path)
        assert fixture["source"].startswith(("apple/ml-tarflow", "matejgrcic/DenseFlow")), path
        assert {"config", "state_dict", "seed"} <= set(fixture), path


@pytest.mark.skipif(not os.environ.get("NF_OFFICIAL_CHECKOUTS"),
                    reason="set NF_OFFICIAL_CHECKOUTS to a folder with ml-tarflow, DenseFlow and survae_flows")
def test_re_recording_reproduces_the_committed_fixtures(tmp_path):
    official = Path(os.environ["NF_OFFICIAL_CHECKOUTS"])
    result = run_recorder("--tarflow", str(official / "ml-tarflow"), "--denseflow", str(official / "DenseFlow"),
                          "--survae", str(official / "survae_flows"), "--tarflow-output", str(tmp_path),
                          "--denseflow-output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name, package in COMMITTED.items():
        committed = ROOT / "packages" / package / "tests" / "fixtures" / name
        assert_same(load_fixture(tmp_path / name), load_fixture(committed))
