"""Reference fixtures recorded from the official implementations, for parity tests.

They live outside the repository, in ``shared/fixtures/reference/`` beside the checkout (or wherever
``NF_REFERENCE_FIXTURES`` points). Where they are absent a test is skipped with the reason, except under ``CI=true``,
where a missing fixture fails the test: CI must prove parity, not skip it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["reference_fixture_dir", "load_reference_fixture"]


def reference_fixture_dir() -> Path:
    """``$NF_REFERENCE_FIXTURES``, else ``<checkout>/../shared/fixtures/reference`` found upwards from here."""
    configured = os.environ.get("NF_REFERENCE_FIXTURES")
    if configured:
        return Path(configured)
    for parent in [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]:
        candidate = parent.parent / "shared" / "fixtures" / "reference"
        if (parent / "packages" / "nfkit-core").is_dir() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "fixtures" / "reference"


def load_reference_fixture(name: str) -> dict[str, Any]:
    """Load ``name`` (e.g. ``"tarflow_uncond.pt"``) or skip the calling test; under ``CI=true`` a miss fails."""
    import pytest

    path = reference_fixture_dir() / name
    if not path.is_file():
        reason = (f"reference fixture {path} is missing (set NF_REFERENCE_FIXTURES or place shared/ beside the "
                  f"checkout)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return torch.load(path, map_location="cpu", weights_only=False)
