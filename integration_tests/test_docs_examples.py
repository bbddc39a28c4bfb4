"""The complete architecture example shown on the concepts page runs as printed: it registers itself through the
plugin hook, builds through the registry and passes the conformance suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_concepts_page_architecture_example_runs_as_printed():
    result = subprocess.run([sys.executable, "docs/examples/architecture.py"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "conformant; samples of shape (8, 4)"
