"""The tutorials (docs/tutorials, executed by sphinx-gallery at every docs build): a tutorial that raises fails the
build, one that runs shows its output and figures, and every tutorial is linked from the index.

The build tests use docs/conf.py's own ``sphinx_gallery_conf`` on a small gallery in a temporary folder; they need
the docs requirements (``nox -s docs`` runs this file after building the site) and skip without them.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

PASSING = '''
"""
A tutorial that works
=====================

It prints a number and draws a figure.
"""
import matplotlib.pyplot as plt

print("the answer is", 6 * 7)
plt.plot([0, 1], [0, 1])
'''

RAISING = '''
"""
A tutorial that breaks
======================

It raises.
"""
raise ValueError("this tutorial is broken on purpose")
'''


def gallery_conf() -> dict:
    """``sphinx_gallery_conf`` as docs/conf.py sets it."""
    return runpy.run_path(str(DOCS / "conf.py"))["sphinx_gallery_conf"]


def build(tmp_path: Path, tutorials: dict[str, str]) -> subprocess.CompletedProcess:
    """Build a site whose only content is a gallery of ``tutorials`` (file name -> source)."""
    pytest.importorskip("sphinx_gallery", reason="the docs requirements (nox -s docs installs them)")
    source = tmp_path / "source"
    (source / "tutorials").mkdir(parents=True)
    (source / "tutorials" / "GALLERY_HEADER.rst").write_text("Tutorials\n=========\n")
    for name, text in tutorials.items():
        (source / "tutorials" / name).write_text(textwrap.dedent(text).lstrip())
    (source / "index.rst").write_text("Test\n====\n\n.. toctree::\n\n   auto_tutorials/index\n")
    (source / "conf.py").write_text(
        "import runpy\n"
        f"conf = runpy.run_path({str(DOCS / 'conf.py')!r})\n"
        "extensions = ['sphinx_gallery.gen_gallery']\n"
        "sphinx_gallery_conf = conf['sphinx_gallery_conf']\n"
        "exclude_patterns = ['_build', 'tutorials']\n")
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(source),
                           str(tmp_path / "html")], capture_output=True, text=True, timeout=600)


def test_the_gallery_runs_every_tutorial_every_time_and_fails_on_errors():
    conf = gallery_conf()
    assert conf["examples_dirs"] == ["tutorials"] and conf["gallery_dirs"] == ["auto_tutorials"]
    assert re.search(conf["filename_pattern"], "/docs/tutorials/01_any_name.py")  # every script is executed
    assert conf["run_stale_examples"] is True  # also when its source did not change: no cached result
    assert conf["abort_on_example_error"] is True and conf["only_warn_on_example_error"] is False
    # nothing that loads from the network: no Binder or JupyterLite links, no times page (jQuery from a CDN)
    assert not conf["binder"] and not conf["jupyterlite"] and conf["write_computation_times"] is False


def test_a_tutorial_that_raises_fails_the_build(tmp_path):
    result = build(tmp_path, {"01_works.py": PASSING, "02_breaks.py": RAISING})
    assert result.returncode != 0
    assert "this tutorial is broken on purpose" in result.stdout + result.stderr


def test_a_tutorial_that_runs_shows_its_output_and_figure(tmp_path):
    result = build(tmp_path, {"01_works.py": PASSING})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (tmp_path / "html" / "auto_tutorials" / "01_works.html").read_text()
    assert "the answer is 42" in page
    assert "sphx_glr_01_works_001.png" in page
    assert (tmp_path / "html" / "_images" / "sphx_glr_01_works_001.png").stat().st_size > 0
    assert runpy.run_path(str(DOCS / "check_offline.py"))["external_resources"](tmp_path / "html") == []


def test_every_tutorial_is_linked_from_the_index():
    tutorials = sorted(path.stem for path in (DOCS / "tutorials").glob("[0-9]*.py"))
    assert len(tutorials) == 7
    linked = re.findall(r":doc:`auto_tutorials/(\w+)`", (DOCS / "index.rst").read_text())
    assert linked == tutorials
