"""The complete architecture example of the docs' contract section runs and passes the conformance suite."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "architecture.py"


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="the docs are not beside this checkout of nfkit-core")
def test_the_architecture_example_is_conformant(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert "conformant; samples of shape (8, 4)" in capsys.readouterr().out
    namespace = runpy.run_path(str(EXAMPLE))
    flow = namespace["build_tanh_flow"](namespace["TanhFlowConfig"](couplings=1, hidden=4),
                                       namespace["DataInfo"]((4,)))
    assert flow.sampling_options() == {"denoise", "shift_scale"}
    with torch.no_grad():
        assert flow.sample(3, shift_scale=0.0).shape == (3, 4)
