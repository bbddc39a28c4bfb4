"""The Python API: distill a teacher run into a student in one call."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nfkit_core.checkpoint import read_checkpoint
from nfkit_core.plugins import Registry, get_registry
from nfkit_core.train import make_run_config
from nfkit_distill.trainer import DistillTrainer

__all__ = ["student_run", "distill"]


def student_run(teacher: str | Path, arch: str | None = None, preset: str | None = None,
                model: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
                registry: Registry | None = None):
    """The student's :class:`~nfkit_core.train.RunConfig`: the teacher's data (and class conditioning), the
    student's architecture (default: the teacher's), preset and options."""
    state = read_checkpoint(teacher)
    train = {"class_conditional": state["train_config"].get("class_conditional", False), **(train or {})}
    return make_run_config(arch or state["architecture"], state["dataset"], model=model, data=state["data_config"],
                           train=train, preset=preset, registry=registry or get_registry())


def distill(teacher: str | Path, out: str | Path, *, arch: str | None = None, preset: str | None = None,
            model: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None, loss: str = "ilkd",
            options: Mapping[str, Any] | None = None, registry: Registry | None = None) -> dict[str, Any] | None:
    """Train a student of ``arch`` (default: the teacher's) with ``preset``/``model`` options by the distiller
    ``loss`` against the teacher run folder ``teacher``; write the student's run to ``out``.

    Returns the trainer's final report (bits/dim on validation and test, parameters, ...)::

        from nfkit_distill import distill
        report = distill("runs/teacher", "runs/student", preset="digits-tiny", loss="ilkd", train={"steps": 2000})
    """
    run = student_run(teacher, arch, preset, model, train, registry)
    trainer = DistillTrainer(run, out, registry=registry, teacher=teacher, distiller=loss, options=dict(options or {}))
    try:
        return trainer.fit()
    finally:
        trainer.close()
