"""benchmarks/gpu_check.sh cannot rot on a machine without a GPU: its steps run there and fail for want of CUDA
only, after every option was read. (Its README's offline install is run by integration_tests/test_packages.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import common
import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the check runs for real, for about 8 minutes")
def test_every_step_runs_and_fails_only_for_want_of_cuda(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable, "OFFICIAL_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(["bash", str(common.ROOT / "benchmarks" / "gpu_check.sh"), str(out)],
                               cwd=common.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    summary = (out / "summary.txt").read_text()
    steps = {"environment": 0, "tests": 0, "ddp_nccl_train": 1, "tarflow_bf16": 2, "denseflow_bf16": 2,
             "tarflow_vs_official": 2}
    for step, status in steps.items():
        assert f"{step}: exit {status} after" in summary, summary
    assert "tests: FAILED: tests skipped for want of CUDA" in summary
    assert "torch" in (out / "environment.txt").read_text() and (out / "tests.xml").is_file()
    assert "train.device is cuda, but no CUDA device is available" in (out / "ddp_nccl_train.log").read_text()
    for step in ("tarflow_bf16", "denseflow_bf16", "tarflow_vs_official"):  # argparse read every option first
        assert "--device cuda requested but CUDA is not available" in (out / f"{step}.log").read_text()

