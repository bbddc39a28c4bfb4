"""Stopping a run cleanly on Ctrl-C (``SIGINT``) or ``SIGTERM``.

While :class:`StopRequests` is active, the first signal only sets a flag: the training loop finishes its step, writes
a checkpoint and raises :class:`TrainingInterrupted`. A second signal raises :class:`KeyboardInterrupt` at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["StopRequests", "TrainingInterrupted", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint.

    Attributes:
        signal_number: the signal that stopped it.
        exit_code: what a command should exit with (``128 + signal``: 130 for ``SIGINT``, 143 for ``SIGTERM``).
    """

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class StopRequests:
    """A context manager that turns the first ``SIGINT`` / ``SIGTERM`` into a request to stop.

    Outside the main thread (where Python cannot install signal handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.signal_number = 0
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        """Whether a signal asked the run to stop."""
        return self.signal_number != 0

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"{signal.Signals(number).name} again: aborted without a checkpoint")
        self.signal_number = number

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
