"""The figures of docs/guides/architectures.rst: each caption states what tools/architecture_grids.py recorded when it
drew the figure (command, steps, test score, size), and the command on the page runs and writes the figures and the
record the page is checked against (here with 2 training steps)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guides" / "architectures.rst"
GRIDS = ROOT / "docs" / "guides" / "grids"
TOOL = ROOT / "tools" / "architecture_grids.py"


def captions() -> dict[str, str]:
    """Architecture -> the caption of its figure, whitespace collapsed."""
    found = re.findall(r"\.\. figure:: grids/(\w+)\.png\n   :alt: [^\n]+\n\n((?:   [^\n]*\n)+)", PAGE.read_text())
    return {arch: " ".join(text.split()) for arch, text in found}


def page_command() -> list[str]:
    """The tool's command as the page prints it."""
    (command,) = re.findall(r"^   (python tools/architecture_grids\.py .*)$", PAGE.read_text(), re.MULTILINE)
    return shlex.split(command)


def test_every_caption_states_what_the_record_says():
    record = json.loads((GRIDS / "grids.json").read_text())
    shown = captions()
    assert sorted(shown) == sorted(record) == ["denseflow", "glow", "maf", "realnvp", "tarflow"]
    for arch, entry in record.items():
        caption = shown[arch]
        assert (GRIDS / f"{arch}.png").stat().st_size > 0
        assert f"after {entry['steps']} steps of ``{entry['train']}``" in caption, arch
        assert f"({entry['parameters']:,} parameters)" in caption, arch
        if arch == "maf":
            assert f"test {entry['test_nats']:.2f} nats per point ({entry['test_bpd']:.2f} bits/dim)" in caption
        else:
            assert f"test {entry['test_bpd']:.2f} bits/dim" in caption, arch
            assert f"Drawn by ``{entry['figure']}``" in caption, arch
        assert f"train.steps={entry['steps']}" in entry["train"]


def test_the_page_command_draws_the_figures(tmp_path):
    command = page_command()
    assert command[:2] == ["python", "tools/architecture_grids.py"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options == {"--runs": "RUNS", "--out": "docs/guides/grids"}
    out = tmp_path / "grids"
    archs = "glow,tarflow,maf"  # one of each kind of figure; TarFlow's is drawn with its denoising option
    result = subprocess.run([sys.executable, str(ROOT / command[1]), "--runs", str(tmp_path / "runs"),
                             "--out", str(out), "--steps", "2", "--archs", archs],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "grids.json").read_text())
    committed = json.loads((GRIDS / "grids.json").read_text())
    assert sorted(record) == sorted(archs.split(","))
    for arch, entry in record.items():
        assert (out / f"{arch}.png").stat().st_size > 0
        assert entry["steps"] == 2 and entry["parameters"] == committed[arch]["parameters"]
        # the same commands as the page's, with the test's 2 steps instead of the page's
        steps = f"train.steps={committed[arch]['steps']}"
        assert entry["train"] == committed[arch]["train"].replace(steps, "train.steps=2")
        assert entry["figure"] == committed[arch]["figure"]

    # a second run reuses the finished runs; a run of another recipe is refused, naming the difference
    result = subprocess.run([sys.executable, str(TOOL), "--runs", str(tmp_path / "runs"), "--out", str(out),
                             "--steps", "3", "--archs", "glow"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0 and "train.steps: 2, the recipe 3" in result.stderr
