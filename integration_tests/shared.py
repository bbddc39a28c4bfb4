"""Constants and helpers shared by the cross-package tests."""

from __future__ import annotations

import os
import site
import subprocess
import venv
from pathlib import Path

ARCHITECTURES = {"glow": "nfkit-glow-maf", "maf": "nfkit-glow-maf", "tarflow": "nfkit-tarflow",
                 "denseflow": "nfkit-denseflow", "realnvp": "nfkit-plugin-realnvp"}


def smallest_digits_preset(spec) -> str:
    """The architecture's smallest preset for the 8x8 digits."""
    for name in ("digits-tiny", "digits-small", "digits"):
        if name in spec.presets:
            return name
    raise AssertionError(f"architecture {spec.name!r} has no digits preset; presets: {sorted(spec.presets)}")


def environment_with_pip(folder: Path) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment in ``folder``, with pip, that reuses this environment's packages (nfkit-core, torch,
    setuptools) through a ``.pth`` file: its Python, and the variables to run it with."""
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir also runs the .pth files of this environment's editable installs
    reuse = "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages())
    Path(purelib, "reuse_outer_environment.pth").write_text(reuse)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # Python 3.11's ensurepip also installs an old setuptools (no bdist_wheel): builds use this environment's
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], env=env, check=True,
                   capture_output=True)
    return python, env
