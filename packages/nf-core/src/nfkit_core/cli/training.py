"""The one shutdown path of the commands that train (``nf train``, ``nf distill`` and any plugin's).

:func:`run_training` builds the trainer, fits it and always closes it (leaving the process group of a distributed
run). Ctrl-C or ``SIGTERM`` finishes the current step, writes a checkpoint and exits with ``128 + signal`` (130 or
143) after one line saying how to continue; a second signal aborts at once with the same status, keeping the last
checkpoint (:mod:`nfkit_core.train.interrupt`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from nfkit_core.train.interrupt import Aborted, TrainingInterrupted
from nfkit_core.train.trainer import Trainer

__all__ = ["run_training"]

SIGINT_EXIT_CODE = 130
"""The exit status of an interrupt that did not come through a signal handler (Ctrl-C while the trainer is built)."""


def run_training(command: str, make_trainer: Callable[[], Trainer]) -> int:
    """Run ``nf COMMAND``'s training to its end or to a signal, and return the command's exit status.

    Args:
        command: the sub-command's name, used in messages and in the resume hint (``nf COMMAND --resume DIR``).
        make_trainer: builds the trainer (a new run or a resumed one); errors it raises propagate.
    """
    trainer = None
    try:
        trainer = make_trainer()
        trainer.fit()
    except TrainingInterrupted as stop:
        print(f"nf {command}: {stop}; continue with: nf {command} --resume {stop.out_dir}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt as abort:
        kept = f"; the last checkpoint is kept in {trainer.out_dir}" if trainer is not None else ""
        print(f"nf {command}: aborted{kept}", file=sys.stderr)
        return abort.exit_code if isinstance(abort, Aborted) else SIGINT_EXIT_CODE
    finally:
        if trainer is not None:
            trainer.close()
    return 0
