"""A model never touches nf's machinery: building TarFlow and running it (likelihood, sampling with the KV cache)
imports neither the plugin manager, data, checkpoints, the trainer nor the command line, and loads no plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import importlib.metadata as metadata, json, sys

loaded, listed = [], []
load, entry_points = metadata.EntryPoint.load, metadata.entry_points
metadata.EntryPoint.load = lambda self: loaded.append(self.group) or load(self)
metadata.entry_points = lambda **kw: listed.append(kw.get("group")) or entry_points(**kw)

import torch
from nfkit_core.specs import DataInfo
from nfkit_tarflow import TarFlowConfig, build_tarflow

torch.manual_seed(0)
config = TarFlowConfig(patch_size=2, channels=16, num_blocks=2, layers_per_block=1, head_dim=8)
flow = build_tarflow(config, DataInfo((1, 8, 8), num_classes=3, num_bins=17)).eval()
with torch.no_grad():
    log_prob = flow.log_prob(torch.rand(2, 1, 8, 8) * 2 - 1, torch.tensor([0, 2]))
    samples = flow.sample(2, torch.tensor([1, 2]), generator=torch.Generator().manual_seed(0), guidance=1.0)
print(json.dumps({"modules": sorted(m for m in sys.modules if m.startswith("nfkit")),
                  "nfkit_entry_points": [g for g in loaded + listed if g == "nfkit"],
                  "finite": bool(torch.isfinite(log_prob).all() and torch.isfinite(samples).all()),
                  "backend": flow.blocks[0].attn_blocks[0].attention.backend.name}))
"""


def test_building_and_running_tarflow_imports_no_machinery_and_loads_no_plugin():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["finite"] and report["backend"] == "auto"
    assert report["nfkit_entry_points"] == []
    machinery = [m for m in report["modules"] if m.startswith(("nfkit_core.plugins", "nfkit_core.cli",
                                                               "nfkit_core.train", "nfkit_core.data",
                                                               "nfkit_core.checkpoint", "nfkit_core.builtins"))]
    assert machinery == []
    assert "nfkit_tarflow.plugin" not in report["modules"]
