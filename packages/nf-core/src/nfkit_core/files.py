"""Writing a run's files so that nothing is lost: atomic replacement, appends that fail clearly, valid JSON only.

* :func:`atomic_write` writes to a temporary file in the same folder, flushes it to disk and renames it over the
  target, so a reader never sees a half-written file and an interrupted write leaves the old file in place. The
  temporary file is named ``.NAME.PID.tmp``; :func:`remove_stale_temporaries` deletes those of dead processes (a
  process killed during a write cannot clean up after itself).
* A full disk (``ENOSPC``, ``EDQUOT``) becomes a :class:`DiskFullError` that names the path and the space needed.
* JSON is written with ``allow_nan=False``: ``NaN`` and ``Infinity`` are not JSON, and a file that holds them is
  unreadable for most JSON readers.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from nfkit_core.errors import NfError

__all__ = ["DiskFullError", "atomic_write", "append_line", "to_json", "remove_stale_temporaries",
           "explain_full_disk", "human_bytes", "temporary_path"]

FULL_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(NfError, OSError):
    """A file could not be written because its file system is full; the message names the path and the space."""


def human_bytes(size: float) -> str:
    """``1536`` -> ``"1.5 KiB"``.

    Args:
        size: a size in bytes.

    Returns:
        the size in bytes, KiB, MiB or GiB (powers of 1024), with one decimal above bytes.
    """
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@contextmanager
def explain_full_disk(path: Path, needed: int) -> Iterator[None]:
    """Turn a full-disk ``OSError`` raised inside the block into a :class:`DiskFullError` about ``path``.

    Args:
        path: the file being written.
        needed: about how many bytes the write needs.
    """
    try:
        yield
    except OSError as error:
        if error.errno not in FULL_DISK_ERRORS or isinstance(error, DiskFullError):
            raise
        free = _free_bytes(path.parent)
        space = f"{human_bytes(free)} free" if free is not None else "free space unknown"
        full = DiskFullError(f"the disk is full: writing {path} needs about {human_bytes(needed)} ({space}); free "
                             f"some space and resume")
        full.errno = error.errno
        raise full from None


def temporary_path(path: Path, pid: int | None = None) -> Path:
    """Where :func:`atomic_write` stages ``path`` in process ``pid`` (this process by default).

    Args:
        path: the file being written.
        pid: the id of the process that writes it; ``None`` for this process.

    Returns:
        ``.NAME.PID.tmp`` next to ``path``.
    """
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], needed: int) -> Path:
    """Write a file through ``write(file)`` atomically: to a temporary file, flushed to disk, then renamed.

    Args:
        path: the file to (re)place.
        write: writes the content into the binary file object it is given.
        needed: about how many bytes the content takes (for the message of a full disk).

    Raises:
        DiskFullError: the file system is full; the previous file at ``path`` is left as it was.
    """
    path = Path(path)
    temporary = temporary_path(path)
    try:
        with explain_full_disk(path, needed):
            with open(temporary, "wb") as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def to_json(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON; a ``ValueError`` naming the problem for ``NaN`` or infinite numbers.

    Args:
        value: what :func:`json.dumps` accepts: dicts, lists, strings, numbers, booleans and ``None``.
        indent: spaces per nesting level; ``None`` writes one line.

    Returns:
        the JSON text.

    Raises:
        ValueError: ``value`` holds a NaN or an infinity.
        TypeError: ``value`` holds something JSON cannot represent (e.g. a tensor).
    """
    try:
        return json.dumps(value, indent=indent, allow_nan=False)
    except ValueError as error:
        raise ValueError(f"refusing to write a non-finite number as JSON ({error}): {value!r}") from None


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline to a text file; a full disk raises :class:`DiskFullError`.

    A write that fails part way may leave a torn last line; readers of append-only files (``metrics.jsonl``) drop
    one.

    Args:
        path: the text file; it is created if missing.
        line: the text to append, without a newline.

    Raises:
        DiskFullError: the file system is full.
    """
    path = Path(path)
    data = (line + "\n").encode()
    with explain_full_disk(path, len(data)):
        with open(path, "ab") as file:
            file.write(data)
            file.flush()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.PID.tmp`` files that :func:`atomic_write` left behind in processes that have died.

    Args:
        folder: the folder to clean (not its subfolders).

    Returns:
        the deleted paths.
    """
    removed = []
    for candidate in Path(folder).glob(".*.*.tmp"):
        pid = candidate.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
