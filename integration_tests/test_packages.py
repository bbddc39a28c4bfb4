"""The packages find each other only through plugins, and nfkit-core never imports an architecture."""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import sys
from pathlib import Path

from shared import ARCHITECTURES, environment_with_pip

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE_MODULES = {"nfkit_tarflow", "nfkit_denseflow", "nfkit_glow_maf", "nfkit_realnvp"}


def test_every_architecture_is_registered_by_its_distribution(registry):
    owners = {entry.name: entry.distribution for entry in registry.architectures.entries()}
    assert owners == ARCHITECTURES


def test_nf_core_source_never_imports_an_architecture():
    offenders = []
    for path in (ROOT / "packages" / "nfkit-core" / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in ARCHITECTURE_MODULES]
    assert offenders == []


def test_importing_all_of_nf_core_loads_no_architecture():
    script = (
        "import importlib, json, pkgutil, sys, nfkit_core;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(nfkit_core.__path__, 'nfkit_core.')"
        " if not m.name.endswith('__main__')];"
        f"print(json.dumps(sorted(set(sys.modules) & set({sorted(ARCHITECTURE_MODULES)!r}))))"
    )
    env = {"NF_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == []


def test_nf_plugins_lists_every_distribution_without_errors():
    result = subprocess.run([sys.executable, "-m", "nfkit_core.cli", "plugins", "--json"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert {p["distribution"] for p in plugins.values()} >= set(ARCHITECTURES.values()) | {"nfkit-core"}
    assert all(p["error"] is None for p in plugins.values())
    assert "architecture glow" in plugins["glow-maf"]["registered"]


def test_every_package_asks_for_a_setuptools_that_reads_its_license():
    """``license = "MIT"`` is an SPDX expression (PEP 639), which setuptools reads from version 77 on; an older one,
    as an install with ``--no-build-isolation`` may find, fails with a configuration error about the license."""
    paths = [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("plugins/*/pyproject.toml")]
    assert len(paths) == 7
    for path in paths:
        config = tomllib.loads(path.read_text())
        if isinstance(config["project"].get("license"), str):
            assert "setuptools>=77" in config["build-system"]["requires"], path


def test_the_offline_install_for_the_gpu_check_installs_its_three_packages(tmp_path):
    """benchmarks/README.md: on a GPU machine that holds PyTorch but reaches no index, pip installs what
    ``gpu_check.sh`` needs with ``--no-deps --no-build-isolation --no-index``."""
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    (line,) = [line.strip() for line in readme.splitlines() if line.strip().startswith("python3 -m pip install")]
    python, env = environment_with_pip(tmp_path / "env")
    result = subprocess.run([python, *shlex.split(line)[1:]], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Successfully installed nfkit-core-0.1.0 nfkit-denseflow-0.1.0 nfkit-tarflow-0.1.0" in result.stdout
