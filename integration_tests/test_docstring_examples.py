"""The examples in the docstrings of every package run, and print what they show (stdlib doctest).

Each docstring with an example is one test case. The main entry points must keep theirs: a docstring example that
is deleted or loses its ``>>>`` lines fails ``test_the_main_entry_points_have_examples``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["nfkit_core", "nfkit_tarflow", "nfkit_denseflow", "nfkit_glow_maf", "nfkit_realnvp", "nfkit_eval",
            "nfkit_distill"]
# Building a flow, log_prob/sample, the conformance check and a registry lookup (issue 13, item 4).
ENTRY_POINTS = {"nfkit_core.flow.NormalizingFlow", "nfkit_core.flow.bits_per_dim",
                "nfkit_core.priors.GaussianPrior.log_prob", "nfkit_core.testing.conformance.check_transform",
                "nfkit_core.plugins.manager.get_registry", "nfkit_glow_maf.glow.build_glow"}
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [info.name for info in pkgutil.walk_packages(path, f"{package}.")
                  if not info.name.endswith("__main__")]
    return names


def docstring_examples() -> list[doctest.DocTest]:
    """Every docstring with an example, found in the module that defines it (doctest skips re-exports)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = [test for name in modules() for test in finder.find(importlib.import_module(name), name) if test.examples]
    return sorted(found, key=lambda test: test.name)


EXAMPLES = docstring_examples()


@pytest.mark.parametrize("test", EXAMPLES, ids=[test.name for test in EXAMPLES])
def test_docstring_example(test: doctest.DocTest) -> None:
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    result = runner.run(test, out=report.append)
    assert result.attempted == len(test.examples)
    assert result.failed == 0, "".join(report)


def test_the_main_entry_points_have_examples() -> None:
    missing = ENTRY_POINTS - {test.name for test in EXAMPLES}
    assert not missing, f"docstrings without a runnable example: {sorted(missing)}"
