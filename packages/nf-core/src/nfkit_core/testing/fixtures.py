"""Fixtures recorded from the official implementations, for parity tests.

Two kinds exist. Small fixtures are committed beside an architecture's tests (``tests/fixtures/``, written by
``tools/record_official_fixtures.py``), so that every checkout runs its parity tests. Larger reference fixtures live
outside the repository, in ``shared/fixtures/reference/`` beside the checkout (or wherever ``NF_REFERENCE_FIXTURES``
points); a parity test also runs on those of them that are present.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = ["reference_fixture_dir", "parity_fixture_paths", "load_fixture"]


def reference_fixture_dir() -> Path:
    """``$NF_REFERENCE_FIXTURES``, else ``<checkout>/../shared/fixtures/reference`` found upwards from here."""
    configured = os.environ.get("NF_REFERENCE_FIXTURES")
    if configured:
        return Path(configured)
    for parent in [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]:
        candidate = parent.parent / "shared" / "fixtures" / "reference"
        if (parent / "packages" / "nf-core").is_dir() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "fixtures" / "reference"


def parity_fixture_paths(committed: Iterable[Path], shared: Iterable[str] = ()) -> list[Path]:
    """The fixtures a parity test runs on: every ``committed`` one, and those of the ``shared`` names present.

    A missing committed fixture is an error (it belongs to the checkout; re-record it with
    ``tools/record_official_fixtures.py``); a missing shared one is left out.

    Args:
        committed: the fixture files committed beside the test.
        shared: names of fixtures in :func:`reference_fixture_dir`.
    """
    paths = list(committed)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"committed parity fixtures {missing} are missing; restore them from git or record "
                                f"them again with tools/record_official_fixtures.py")
    directory = reference_fixture_dir()
    return paths + [directory / name for name in shared if (directory / name).is_file()]


def load_fixture(path: Path) -> dict[str, Any]:
    """A recorded fixture: a dict of tensors, configs and notes (see the recorder for its keys).

    Args:
        path: the fixture file (``.pt``).
    """
    return torch.load(path, map_location="cpu", weights_only=False)
