"""Stopping a run cleanly on Ctrl-C (``SIGINT``) or ``SIGTERM``.

While :class:`StopRequests` is active, the first signal only sets a flag: the training loop finishes its step, writes
a checkpoint and raises :class:`TrainingInterrupted`. A second signal raises :class:`Aborted` (a
:class:`KeyboardInterrupt`) at once. The commands that train turn both into an exit status in one place,
:func:`nfkit_core.cli.training.run_training`.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["Aborted", "StopRequests", "TrainingInterrupted", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint.

    Attributes:
        signal_number: the signal that stopped it.
        exit_code: what a command should exit with (``128 + signal``: 130 for ``SIGINT``, 143 for ``SIGTERM``).
    """

    def __init__(self, message: str, signal_number: int, out_dir: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
        self.out_dir = out_dir


class Aborted(KeyboardInterrupt):
    """A second signal aborted the run at once, without a checkpoint (the last one written is kept).

    Attributes:
        signal_number: the second signal.
        exit_code: ``128 + signal``, as for :class:`TrainingInterrupted`.
    """

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"{signal.Signals(signal_number).name} again: aborted without a checkpoint")
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
            raise Aborted(number)
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
