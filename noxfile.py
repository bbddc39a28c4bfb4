"""Every check of the nf monorepo. `nox` runs the default sessions; `nox -s NAME` one of them.

Each session installs the tested versions from constraints.txt. With uv installed (`pip install uv`) environments are
made by uv, which keeps one cached copy of torch and links it into every environment: after the first session an
environment takes seconds instead of minutes. Without uv, nox falls back to virtualenv and pip.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nox
import tomllib

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
PACKAGES = ["packages/nf-core", "packages/nf-arch-glow-maf", "packages/nf-arch-tarflow", "packages/nf-arch-denseflow",
            "packages/nf-distill"]
PLUGINS = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("plugins/*/pyproject.toml"))
ARCHITECTURES = {"nfkit-core": [], "nfkit-glow-maf": ["glow", "maf"], "nfkit-tarflow": ["tarflow"],
                 "nfkit-denseflow": ["denseflow"], "nfkit-distill": []}
# The test tensors are tiny: one OpenMP thread per process is faster than several fighting over two cores.
TEST_ENV = {"OMP_NUM_THREADS": "1"}
PYTEST = ("pytest", "-q", "--import-mode=importlib", "-p", "no:cacheprovider")

nox.options.sessions = ["lint", "tests", "integration", "docs", "wheels"]
nox.options.default_venv_backend = "uv|virtualenv"


def install_everything(session: nox.Session, editable: bool = True) -> None:
    flag = ["-e"] if editable else []
    args = [item for path in PACKAGES + PLUGINS for item in (*flag, path)]
    session.install(*CONSTRAINTS, *args, "pytest")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every package, plugin, test and script."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Every package's and plugin's own tests."""
    install_everything(session)
    session.run(*PYTEST, *[f"{path}/tests" for path in PACKAGES + PLUGINS], *session.posargs, env=TEST_ENV)


@nox.session
def integration(session: nox.Session) -> None:
    """The tests across packages in integration_tests/."""
    install_everything(session)
    session.run(*PYTEST, "integration_tests", *session.posargs, env=TEST_ENV)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs; any warning is an error."""
    install_everything(session)
    session.install(*CONSTRAINTS, "sphinx", "furo")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def wheels(session: nox.Session) -> None:
    """Build each package's wheel, install it alone in a fresh environment, import it and check its entry points."""
    session.install("build")
    dist = ROOT / "dist"
    dist.mkdir(exist_ok=True)
    for old in dist.glob("*.whl"):
        old.unlink()
    for path in PACKAGES:
        session.run("python", "-m", "build", "--wheel", "--installer", "uv" if shutil.which("uv") else "pip",
                    "--outdir", str(dist), path)
    uv = shutil.which("uv")
    for path in PACKAGES:
        name = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]["name"]
        # The wheel file itself, not its name, so that no index can hand over another build.
        (wheel,) = dist.glob(f"{name.replace('-', '_')}-*.whl")
        env = Path(session.create_tmp()) / f"env-{name}"
        python = str(env / "bin" / "python")
        install = ("install", "-q", *CONSTRAINTS, "--find-links", str(dist), str(wheel))
        if uv:
            session.run(uv, "venv", "-q", "--clear", str(env), external=True)
            session.run(uv, "pip", *install, "--python", python, external=True)
        else:
            session.run("python", "-m", "venv", "--clear", str(env))
            session.run(python, "-m", "pip", *install, external=True)
        script = (
            "import importlib.metadata as m, json;"
            f"d = m.distribution({name!r});"
            "eps = [e for e in d.entry_points if e.group == 'nfkit'];"
            "[e.load() for e in eps];"
            "from nfkit_core.plugins import get_plugin_manager;"
            "p = get_plugin_manager();"
            "bad = {i.name: i.error for i in p.plugins if i.error};"
            "assert not bad, bad;"
            f"assert p.registry.architectures.names() == {sorted(ARCHITECTURES[name])!r}, "
            "p.registry.architectures.names();"
            "print(json.dumps({'distribution': d.metadata['Name'], 'version': d.version,"
            " 'entry_points': [e.name for e in eps], 'registered': sorted(e.kind + ' ' + e.name"
            " for e in p.registry.entries())}))"
        )
        session.run(python, "-c", script, external=True)
    session.log(json.dumps({"wheels": sorted(p.name for p in dist.glob("*.whl"))}))
