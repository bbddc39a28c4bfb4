"""What a run leaves in its folder and on the console: metrics, figures, the configuration, the report.

Only rank 0 of a distributed run writes; on the other ranks every method here is a no-op (the metrics are still kept
in memory). The folder:

``metrics.jsonl``         training and validation metrics, one JSON object per line (:mod:`.metrics`)
``samples/step_*.png``    sample grids (scatter plots for vector data)
``curves.png``            loss and bits/dim curves
``run.json``              the configuration, as started, with the versions of the packages
``report.json``           the final held-out likelihoods
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor

from nfkit_core.checkpoint import CHECKPOINT_NAME
from nfkit_core.data import Preprocessing
from nfkit_core.errors import ConfigError
from nfkit_core.extras import require
from nfkit_core.files import atomic_write, explain_full_disk, remove_stale_temporaries, to_json
from nfkit_core.train.metrics import MetricsLog
from nfkit_core.train.plots import plot_curves, save_samples

__all__ = ["RunFolder", "RunFolderError", "check_run_folder", "RUN_FILES"]

RUN_FILES = ("run.json", CHECKPOINT_NAME, "metrics.jsonl")
"""Files of which one marks a folder as an nf run."""

FIGURE_BYTES = 256 * 1024
"""About the size of a sample grid and the curves together, for the message of a full disk."""


class RunFolderError(ConfigError):
    """The ``--out`` folder cannot hold a new run: it is a file, read-only, or holds something other than a run."""


def check_run_folder(path: str | Path, force: bool = False) -> Path:
    """Check that a new run can be written to ``path``; returns it.

    A folder that does not exist yet, an empty one, or one that holds an nf run without a checkpoint (a run that
    stopped before its first checkpoint) are fine. A folder with other files is refused unless ``force``.

    Args:
        path: the run folder (``nf train --out``); it need not exist yet.
        force: accept a non-empty folder that is not an nf run (``--force``); its files are left in place.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        RunFolderError: ``path`` is a file, is not writable, or is a non-empty folder that is not an nf run.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out {path} is a file, not a folder; choose a folder for the run")
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write to {existing} (permission denied); choose a writable --out folder")
    if path.is_dir() and not force:
        contents = [p.name for p in path.iterdir()]
        if contents and not any(name in contents for name in RUN_FILES):
            shown = ", ".join(sorted(contents)[:5]) + (", ..." if len(contents) > 5 else "")
            raise RunFolderError(f"--out {path} is a non-empty folder that is not an nf run (it holds {shown}); "
                                 f"choose an empty or new folder, or pass --force to write into it anyway")
    return path


class RunFolder:
    """The files and console output of one run.

    Args:
        path: the run folder.
        write: whether this process writes (rank 0).
        start_step: the step the run starts from; metrics logged after it are dropped (see :class:`MetricsLog`).
    """

    def __init__(self, path: str | Path, write: bool, start_step: int) -> None:
        self.path = Path(path)
        self.write = write
        if write:
            self.path.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.path)
        self.metrics = MetricsLog(self.path / "metrics.jsonl", write=write, start_step=start_step)

    @property
    def checkpoint(self) -> Path:
        """The run's checkpoint file."""
        return self.path / CHECKPOINT_NAME

    def say(self, message: str) -> None:
        """Print a line on the console, above the progress bar (rank 0 only).

        Args:
            message: the line, without a trailing newline.
        """
        if self.write:
            require("tqdm", "training's console output").tqdm.write(message, file=sys.stdout)

    @contextmanager
    def progress(self, total: int, initial: int, enabled: bool, description: str):
        """A progress bar over the steps (disabled on ranks other than 0 and when not ``enabled``).

        Args:
            total: the step the bar ends at (``train.steps``).
            initial: the step the bar starts from (the resumed checkpoint's step, else 0).
            enabled: show the bar (``train.progress``).
            description: the label shown left of the bar.

        Yields:
            the ``tqdm`` bar, closed on exit; call its ``update`` once per step.
        """
        bar = require("tqdm", "training's progress bar").tqdm(
            total=total, initial=initial, disable=not (enabled and self.write), dynamic_ncols=True, desc=description)
        try:
            yield bar
        finally:
            bar.close()

    def _write_json(self, name: str, value: Mapping[str, Any]) -> Path:
        content = (to_json(value, indent=2) + "\n").encode()
        return atomic_write(self.path / name, lambda file: file.write(content), needed=len(content))

    def write_run(self, run: Mapping[str, Any]) -> None:
        """Write ``run.json``: the configuration as started (atomically; rank 0 only).

        Args:
            run: JSON-serialisable values (:meth:`~nfkit_core.train.RunConfig.to_dict` and the package versions);
                tensors and paths are converted by :func:`~nfkit_core.files.to_json`.
        """
        if self.write:
            self._write_json("run.json", run)

    def write_report(self, report: Mapping[str, Any]) -> None:
        """Write ``report.json`` (atomically; rank 0 only).

        Args:
            report: the final report, e.g. held-out bits/dim and nats per example.
        """
        if self.write:
            self._write_json("report.json", report)

    def sample_grid_path(self, step: int) -> Path:
        """Where the sample grid of ``step`` goes.

        Args:
            step: the optimizer step the samples were drawn at.

        Returns:
            ``samples/step_NNNNNN.png`` in the run folder (the step zero-padded to six digits).
        """
        return self.path / "samples" / f"step_{step:06d}.png"

    def write_figures(self, step: int, samples: Tensor, preprocessing: Preprocessing, nrow: int | None) -> None:
        """Write the sample grid of ``step`` and redraw the curves from the metrics so far (rank 0 only).

        Args:
            step: the optimizer step the samples were drawn at (names the file, see :meth:`sample_grid_path`).
            samples: samples of shape ``(N, *data_shape)`` in the flow's units.
            preprocessing: the dataset's preprocessing, which maps ``samples`` back to pixel values.
            nrow: images per row of the grid; ``None`` picks a near-square grid.

        Raises:
            nfkit_core.files.DiskFullError: the disk is full.
        """
        if not self.write:
            return
        path = self.sample_grid_path(step)
        with explain_full_disk(path, FIGURE_BYTES):
            path.parent.mkdir(parents=True, exist_ok=True)
            save_samples(samples, preprocessing, path, nrow=nrow)
            plot_curves(self.metrics.rows, self.path / "curves.png")
