"""Check that a built HTML site loads no script, stylesheet or font from the network.

Run after ``sphinx-build`` (the nox ``docs`` session does)::

    python docs/check_offline.py docs/_build/html

Every ``<script src>``, ``<link href>`` (stylesheets, preloads, icons) and ``<img src>`` must point inside the site,
and the MathJax the pages load must be the copy in ``_static/mathjax``; otherwise formulas show as raw LaTeX offline.
Exits 1 and lists each offending reference.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path

EXTERNAL_PREFIXES = ("http://", "https://", "//")
LOADING_ATTRIBUTES = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src"}


class _ResourceCollector(HTMLParser):
    """Collects the addresses a page loads (not the links a reader may follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attribute = LOADING_ATTRIBUTES.get(tag)
        values = dict(attrs)
        if attribute is None or not values.get(attribute):
            return
        if tag == "link" and "canonical" in (values.get("rel") or ""):
            return
        self.loaded.append(values[attribute])


def external_resources(site: Path) -> list[tuple[Path, str]]:
    """Every (page, address) in ``site`` whose address points outside the site."""
    found = []
    for page in sorted(site.rglob("*.html")):
        collector = _ResourceCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        found.extend((page, address) for address in collector.loaded if address.startswith(EXTERNAL_PREFIXES))
    return found


def built_site(argv: list[str], script: str) -> Path:
    """The built HTML folder a docs check was given on its command line; exits with status 2 and a usage line, or
    with how to build the site, when it was not given one."""
    if len(argv) != 1:
        print(f"usage: python docs/{script} BUILT_HTML_DIR", file=sys.stderr)
        raise SystemExit(2)
    site = Path(argv[0])
    if not (site / "index.html").is_file():
        print(f"{site} has no index.html: build the docs first (sphinx-build -b html docs {site})", file=sys.stderr)
        raise SystemExit(2)
    return site


def main(argv: list[str]) -> int:
    site = built_site(argv, "check_offline.py")
    problems = [f"{page.relative_to(site)}: loads {address}" for page, address in external_resources(site)]
    if not (site / "_static" / "mathjax" / "tex-chtml.js").is_file():
        problems.append("_static/mathjax/tex-chtml.js is missing: the local MathJax was not copied")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} reference(s) need the network; the docs must build and read offline", file=sys.stderr)
        return 1
    print(f"{site}: no page loads anything from the network")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
