"""``metrics.jsonl``: one JSON object per line, appended as training goes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from nfkit_core.errors import NfError
from nfkit_core.files import append_line, atomic_write, to_json

__all__ = ["MetricsLog", "MetricsFileError", "read_metrics"]


class MetricsFileError(NfError, ValueError):
    """A ``metrics.jsonl`` file is damaged before its last line (a torn last line is repaired instead)."""


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of a ``metrics.jsonl`` file, and the reason its last line was dropped (``None`` if none was).

    Only the last line may be torn: a process killed, or a disk filled, in the middle of an append leaves a partial
    line, or a line of NUL bytes where the file system had reserved the space. Damage anywhere else is an error.

    Args:
        path: the ``metrics.jsonl`` file.

    Returns:
        ``(rows, dropped)``, the parsed rows in file order and why the torn last line was dropped (or ``None``).

    Raises:
        MetricsFileError: a line other than the last is not JSON.
        FileNotFoundError: nothing at ``path``.
    """
    lines = path.read_bytes().split(b"\n")
    rows, dropped = [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            if b"\x00" in line:
                raise ValueError("NUL bytes")
            rows.append(json.loads(line))
        except ValueError as error:  # also JSONDecodeError and UnicodeDecodeError
            if any(rest.strip(b"\x00 \t\r") for rest in lines[number:]):
                raise MetricsFileError(f"{path}, line {number}: not a JSON object ({error}); only a torn last line is "
                                 f"repaired, this file is damaged elsewhere") from None
            dropped = f"line {number} is torn ({error})"
    return rows, dropped


class MetricsLog:
    """The rows of a run's ``metrics.jsonl``, kept in memory for the plots and appended to the file.

    Args:
        path: the ``metrics.jsonl`` file.
        write: whether this process writes (only rank 0 of a distributed run does).
        start_step: the step the run starts from (0, or the step of the checkpoint it resumes). Rows of later steps
            in an existing file, logged after that checkpoint and before an interruption, are dropped, and so is a
            torn last line (with a warning).
    """

    def __init__(self, path: str | Path, write: bool = True, start_step: int = 0) -> None:
        self.path = Path(path)
        self.write = write
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            rows, dropped = read_metrics(self.path)
            if dropped and write:
                warnings.warn(f"{self.path}: {dropped}; dropped it (the run was interrupted while writing it)",
                              stacklevel=2)
            self.rows = [row for row in rows if row.get("step", 0) <= start_step]
            if write and (dropped or len(self.rows) != len(rows)):
                content = "".join(to_json(row) + "\n" for row in self.rows).encode()
                atomic_write(self.path, lambda file: file.write(content), needed=len(content))

    def append(self, row: dict[str, Any]) -> None:
        """Keep ``row`` and append it to the file (``NaN`` and infinities are refused: they are not JSON).

        Args:
            row: one line of metrics, e.g. ``{"step": 10, "loss": ..., "bpd": ...}`` (loss in nats, bpd in bits/dim).

        Raises:
            ValueError: ``row`` holds a NaN or an infinity.
        """
        line = to_json(row)
        self.rows.append(row)
        if self.write:
            append_line(self.path, line)
