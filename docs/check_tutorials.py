"""Check that every tutorial in docs/tutorials ran in the build that made a site, and print how long each took.

Run after ``sphinx-build`` (the nox ``docs`` session does)::

    python docs/check_tutorials.py docs/_build/html

Each ``docs/tutorials/NN_name.py`` must have its page ``auto_tutorials/NN_name.html`` showing at least one figure the
script drew (``sphx_glr_NN_name_001.png``) and its printed output, and sphinx-gallery must have recorded the
script's running time (``docs/auto_tutorials/NN_name.cost.json``, written when it executes a script). Every build runs
every script (``run_stale_examples`` in docs/conf.py), and the nox session removes ``docs/auto_tutorials`` before it
builds, so what the pages show comes from that build. Exits 1 and lists each problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from check_offline import built_site  # the sibling script: this one runs as ``python docs/check_tutorials.py``

DOCS = Path(__file__).resolve().parent
SOURCES = DOCS / "tutorials"
GENERATED = DOCS / "auto_tutorials"


def problems_and_times(site: Path) -> tuple[list[str], dict[str, float]]:
    """The problems found, and each tutorial's running time in seconds as sphinx-gallery measured it."""
    problems, times = [], {}
    for source in sorted(SOURCES.glob("[0-9]*.py")):
        name = source.stem
        page = site / "auto_tutorials" / f"{name}.html"
        if not page.is_file():
            problems.append(f"{name}: no page {page.relative_to(site)}")
            continue
        html = page.read_text(encoding="utf-8")
        if f"sphx_glr_{name}_001.png" not in html:
            problems.append(f"{name}: its page shows no figure of the script")
        if "sphx-glr-script-out" not in html:
            problems.append(f"{name}: its page shows no printed output of the script")
        cost = GENERATED / f"{name}.cost.json"
        if not cost.is_file():
            problems.append(f"{name}: sphinx-gallery recorded no running time ({cost.relative_to(DOCS)})")
            continue
        times[name] = json.loads(cost.read_text())["time"]
    return problems, times


def main(argv: list[str]) -> int:
    site = built_site(argv, "check_tutorials.py")
    problems, times = problems_and_times(site)
    for name, seconds in times.items():
        print(f"{name}: {seconds:.1f} s")
    print(f"tutorials: {sum(times.values()):.1f} s in all")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
