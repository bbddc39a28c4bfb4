"""Every check of the nf monorepo. `nox` runs the default sessions; `nox -s NAME` one of them.

Each package's own tests run through that package's `tox.ini` (`tests` calls them one after the other): tox builds
the package's wheel and installs it, with only what it declares, into a fresh environment, as a user's `pip install`
would. nox runs what spans packages: lint, the integration tests, the docs, and the `wheels` check that every wheel
installs alone, registers its plugins and pulls none of the training extra's packages.

Each session installs the tested versions from constraints.txt. With uv installed (`pip install uv`) environments are
made by uv (tox through tox-uv), which keeps one cached copy of torch and links it into every environment: after the
first session an environment takes seconds instead of minutes. Without uv, nox falls back to virtualenv and pip.
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
            "packages/nf-eval", "packages/nf-distill"]
PLUGINS = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("plugins/*/pyproject.toml"))
ARCHITECTURES = {"nfkit-core": [], "nfkit-glow-maf": ["glow", "maf"], "nfkit-tarflow": ["tarflow"],
                 "nfkit-denseflow": ["denseflow"], "nfkit-plugin-realnvp": ["realnvp"], "nfkit-eval": [],
                 "nfkit-distill": []}
# The `train` extra of nfkit-core: installing the core, an architecture or a plugin must not pull any of them.
TRAIN_EXTRA = ["matplotlib", "sklearn", "tqdm", "torchvision"]
# Distributions that depend on nfkit-core[train]: nfkit-eval evaluates on the trainer's datasets and draws figures,
# nfkit-distill trains its students with the trainer.
NEEDS_TRAIN_EXTRA = {"nfkit-eval", "nfkit-distill"}
TOX = ("tox>=4.20", "tox-uv>=1.11")
# The test tensors are tiny: one OpenMP thread per process is faster than several fighting over two cores.
TEST_ENV = {"OMP_NUM_THREADS": "1"}
# Sphinx, its theme, MathJax served from the built site (sphinx-mathjax-offline ships MathJax 3.2.2), the
# command-line reference generated from the argparse parsers (sphinx-argparse), and the tutorials executed at build
# time (sphinx-gallery; 0.17 reads GALLERY_HEADER.rst).
DOCS_REQUIREMENTS = ["sphinx", "furo", "sphinx-mathjax-offline", "sphinx-argparse", "sphinx-gallery>=0.17,<1"]
PYTEST = ("pytest", "-q", "--import-mode=importlib", "-p", "no:cacheprovider")

nox.options.sessions = ["lint", "tests", "integration", "benchmarks", "docs", "wheels"]
nox.options.default_venv_backend = "uv|virtualenv"


def install_everything(session: nox.Session, editable: bool = True) -> None:
    flag = ["-e"] if editable else []
    # nfkit-core with its training extra: the integration tests and the docs run `nf train`.
    paths = [f"{path}[train]" if path == "packages/nf-core" else path for path in PACKAGES + PLUGINS]
    args = [item for path in paths for item in (*flag, path)]
    # setuptools: the test of the plugin guide builds its example package offline (pip --no-build-isolation)
    session.install(*CONSTRAINTS, *args, "pytest", "setuptools")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every package, plugin, test and script."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Every package's and plugin's own tests, each through its tox.ini (its built wheel, what it declares)."""
    session.install(*CONSTRAINTS, *TOX)
    for path in PACKAGES + PLUGINS:
        session.run("tox", "run", "-c", f"{path}/tox.ini", "-e", "py", "--", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """The tests across packages in integration_tests/."""
    install_everything(session)
    session.run(*PYTEST, "integration_tests", *session.posargs, env=TEST_ENV)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """The benchmarks' shared timing method, and every benchmark script in its seconds-long --tiny mode."""
    install_everything(session)
    session.install(*CONSTRAINTS, "-r", "benchmarks/requirements.txt")
    session.run(*PYTEST, "benchmarks/tests", *session.posargs, env=TEST_ENV)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs offline, executing every tutorial; any warning or failing tutorial is an error; then check
    that no page loads anything from the network and that every tutorial ran and shows its figures."""
    install_everything(session)
    session.install(*CONSTRAINTS, *DOCS_REQUIREMENTS)
    # No tutorial output of an earlier build may stand in for this one's.
    shutil.rmtree(ROOT / "docs" / "auto_tutorials", ignore_errors=True)
    session.run("sphinx-build", "-n", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html", env=TEST_ENV)
    session.run("python", "docs/check_offline.py", "docs/_build/html")
    session.run("python", "docs/check_tutorials.py", "docs/_build/html")
    # A tutorial that raises fails the build (the test builds a small gallery with docs/conf.py's settings).
    session.run(*PYTEST, "integration_tests/test_docs_tutorials.py", env=TEST_ENV)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build each package's wheel, install it alone in a fresh environment, import it and check its entry points;
    none of the training extra's packages may come with it, and `nf train` must then say how to install them."""
    session.install("build")
    dist = ROOT / "dist"
    dist.mkdir(exist_ok=True)
    for old in dist.glob("*.whl"):
        old.unlink()
    for path in PACKAGES + PLUGINS:
        session.run("python", "-m", "build", "--wheel", "--installer", "uv" if shutil.which("uv") else "pip",
                    "--outdir", str(dist), path)
    uv = shutil.which("uv")
    for path in PACKAGES + PLUGINS:
        name = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]["name"]
        # The wheel file itself, not its name, so that no index can hand over another build.
        (wheel,) = dist.glob(f"{name.replace('-', '_')}-*.whl")
        env = Path(session.create_tmp()) / f"env-{name}"
        python = str(env / "bin" / "python")
        install = ("install", "-q", *CONSTRAINTS, "--find-links", str(dist), str(wheel))
        if uv:
            session.run(uv, "venv", "-q", "--clear", str(env), external=True)
            # The wheels keep their version while their content changes: uv must not reuse a cached older build.
            refresh = [item for dist_name in ARCHITECTURES for item in ("--refresh-package", dist_name)]
            session.run(uv, "pip", *install, *refresh, "--python", python, external=True)
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
            + ("" if name in NEEDS_TRAIN_EXTRA else
               "import importlib.util as u;"
               f"pulled = [n for n in {TRAIN_EXTRA!r} if u.find_spec(n)];"
               "assert not pulled, f'the lean install pulled {pulled}';"
               "import subprocess, sys;"
               "r = subprocess.run([sys.executable, '-m', 'nfkit_core.cli', 'train', '--arch', 'x'],"
               " capture_output=True, text=True);"
               "assert r.returncode == 2 and \"nfkit-core[train]\" in r.stderr and len(r.stderr.splitlines()) == 1, r;")
            +
            "print(json.dumps({'distribution': d.metadata['Name'], 'version': d.version,"
            " 'entry_points': [e.name for e in eps], 'registered': sorted(e.kind + ' ' + e.name"
            " for e in p.registry.entries())}))"
        )
        session.run(python, "-c", script, external=True)
    session.log(json.dumps({"wheels": sorted(p.name for p in dist.glob("*.whl"))}))
