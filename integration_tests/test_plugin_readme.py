"""Every command of the RealNVP plugin's README runs as written (the README is an outside author's first stop)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "plugins" / "nf-plugin-realnvp" / "README.md"


def readme_commands() -> list[list[str]]:
    """The shell commands of the README's ``bash`` blocks, without their comments."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_the_readme_commands_run_as_written(tmp_path):
    commands = readme_commands()
    assert [command[:2] for command in commands] == [["pip", "install"], ["nf", "plugins"], ["nf", "train"]]
    # pip install: this environment has the plugin installed from the same folder
    assert version("nfkit-plugin-realnvp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = {}
    for command in commands[1:]:
        nf = [sys.executable, "-m", "nfkit_core.cli", *command[1:]]
        result = subprocess.run(nf, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stderr[-2000:]}"
        outputs[command[1]] = result.stdout
    assert "realnvp" in outputs["plugins"] and "nfkit-plugin-realnvp" in outputs["plugins"]
    run = json.loads((tmp_path / "runs" / "moons" / "run.json").read_text())
    assert (run["architecture"], run["model_config"]["hidden"]) == ("realnvp", 64)
    assert (tmp_path / "runs" / "moons" / "checkpoint.pt").is_file()
    report = json.loads((tmp_path / "runs" / "moons" / "report.json").read_text())
    assert (report["data_dimension"], report["test_nats"] < 2.6) == (2, True)  # the README's claim
