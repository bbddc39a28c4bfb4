"""``metrics.jsonl``: one JSON object per line, appended as training goes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog"]


class MetricsLog:
    """The rows of a run's ``metrics.jsonl``, kept in memory for the plots and appended to the file.

    Args:
        path: the ``metrics.jsonl`` file.
        write: whether this process writes (only rank 0 of a distributed run does).
        start_step: the step the run starts from (0, or the step of the checkpoint it resumes). Rows of later steps
            in an existing file, logged after that checkpoint and before an interruption, are dropped.
    """

    def __init__(self, path: str | Path, write: bool = True, start_step: int = 0) -> None:
        self.path = Path(path)
        self.write = write
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.rows = [row for row in rows if row.get("step", 0) <= start_step]
            if write and len(self.rows) != len(rows):
                temporary = self.path.with_suffix(".jsonl.tmp")
                temporary.write_text("".join(json.dumps(row) + "\n" for row in self.rows))
                os.replace(temporary, self.path)

    def append(self, row: dict[str, Any]) -> None:
        """Keep ``row`` and append it to the file."""
        self.rows.append(row)
        if self.write:
            with open(self.path, "a") as file:
                file.write(json.dumps(row) + "\n")
