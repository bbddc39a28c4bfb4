"""The commands and the Python of the docs' "Getting started" (docs/index.rst) run as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "docs" / "index.rst"


def code_blocks(language: str) -> list[str]:
    """The bodies of the ``.. code-block:: LANGUAGE`` directives of the index page, dedented."""
    blocks = re.findall(rf"\.\. code-block:: {language}\n\n((?:   .*\n|\n)+)", INDEX.read_text())
    return ["\n".join(line[3:] for line in block.splitlines()).strip() + "\n" for block in blocks]


def test_getting_started_runs_as_printed(tmp_path):
    commands = [shlex.split(line.split("#", 1)[0]) for block in code_blocks("bash") for line in block.splitlines()
                if line.split("#", 1)[0].strip()]
    assert [command[:2] for command in commands] == [["pip", "install"], ["nf", "plugins"], ["nf", "train"],
                                                     ["nf", "sample"]]
    # pip install: this environment holds the named folders, installed from this checkout
    folders = [arg.split("[")[0] for arg in commands[0] if arg.startswith(("packages/", "plugins/"))]
    assert folders and all((ROOT / folder / "pyproject.toml").is_file() for folder in folders)
    assert version("nfkit-core") and version("nfkit-glow-maf")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in commands[1:]:
        nf = [sys.executable, "-m", "nfkit_core.cli", *command[1:]]
        result = subprocess.run(nf, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stderr[-2000:]}"
    run = tmp_path / "runs" / "digits"
    for name in ("checkpoint.pt", "metrics.jsonl", "curves.png", "run.json", "report.json", "samples"):
        assert (run / name).exists(), f"the page says the run folder holds {name}"
    assert (tmp_path / "samples.png").stat().st_size > 0

    (python,) = code_blocks("python")
    result = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["torch.Size([16, 1, 8, 8])", "torch.Size([16])"]
