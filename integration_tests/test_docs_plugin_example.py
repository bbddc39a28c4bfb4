"""The plugin guide's example package (docs/plugins.rst, files in docs/plugin_example) works as printed.

The test copies the files the guide includes, installs them with pip into a fresh virtual environment that reuses
this environment's packages (nfkit-core, torch) through a ``.pth`` file, runs the package's own tests there, and
trains one step with the guide's ``nf train`` command.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from shared import environment_with_pip

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.rst"
EXAMPLE = ROOT / "docs" / "plugin_example"


def test_the_guide_prints_every_file_of_the_example():
    included = set(re.findall(r"\.\. literalinclude:: plugin_example/(\S+)", GUIDE.read_text()))
    files = {str(path.relative_to(EXAMPLE)) for path in EXAMPLE.rglob("*") if path.is_file()
             and "__pycache__" not in path.parts and ".egg-info" not in str(path)}
    assert included == files


def guide_commands() -> list[list[str]]:
    section = GUIDE.read_text().split("**Install and use it:**", 1)[1]
    block = re.search(r"\.\. code-block:: bash\n\n((?:   .*\n)+)", section).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_example_installs_passes_its_tests_and_trains(tmp_path):
    pytest.importorskip("setuptools", reason="pip builds the example without network: setuptools must be installed")
    package = tmp_path / "nf-my-flow"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    python, env = environment_with_pip(tmp_path / "env")

    install, plugins, train, sample = guide_commands()
    assert install == ["pip", "install", "./nf-my-flow"]
    result = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                             "./nf-my-flow"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    result = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and "3 passed" in result.stdout, result.stdout[-3000:]

    nf = [python, "-m", "nfkit_core.cli"]
    result = subprocess.run([*nf, *plugins[1:]], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and "my-flow" in result.stdout and "nf-my-flow" in result.stdout, result.stdout
    # the guide's command, for one step
    result = subprocess.run([*nf, *train[1:], "--set", "train.steps=1"], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "my-flow" / "checkpoint.pt").is_file()
    result = subprocess.run([*nf, *sample[1:]], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "my-flow.png").stat().st_size > 0
