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
    student's architecture (default: the teacher's), preset and options.

    Args:
        teacher: the teacher's run folder or checkpoint file.
        arch: the student's architecture; ``None`` for the teacher's.
        preset: the student's preset; ``None`` picks the one named after the dataset, if there is one.
        model: the student's model options; ``None`` for none.
        train: the student's training options; ``None`` for none (``class_conditional`` follows the teacher).
        registry: where names are looked up; ``None`` uses the installed plugins'.

    Returns:
        the student's run configuration.

    Raises:
        MissingFileError, CheckpointError: as :func:`~nfkit_core.checkpoint.read_checkpoint`.
        UnknownNameError: no architecture or preset of that name.
        ConfigError: an unknown option or a value of the wrong type.
    """
    state = read_checkpoint(teacher)
    train = {"class_conditional": state["train_config"].get("class_conditional", False), **(train or {})}
    return make_run_config(arch or state["architecture"], state["dataset"], model=model, data=state["data_config"],
                           train=train, preset=preset, registry=registry or get_registry())


def distill(teacher: str | Path, out: str | Path, *, arch: str | None = None, preset: str | None = None,
            model: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None, loss: str = "ilkd",
            options: Mapping[str, Any] | None = None, registry: Registry | None = None) -> dict[str, Any] | None:
    """Train a student of ``arch`` (default: the teacher's) with ``preset``/``model`` options by the distiller
    ``loss`` against the teacher run folder ``teacher``; write the student's run to ``out``.

    Example::

        from nfkit_distill import distill
        report = distill("runs/teacher", "runs/student", preset="digits-tiny", loss="ilkd", train={"steps": 2000})

    Args:
        teacher: the teacher's run folder or checkpoint file.
        out: the student's run folder.
        arch: the student's architecture; ``None`` for the teacher's.
        preset: the student's preset; ``None`` picks the one named after the dataset, if there is one.
        model: the student's model options; ``None`` for none.
        train: the student's training options (:class:`~nfkit_core.train.TrainConfig`); ``None`` for none.
        loss: the registered distiller (``"lkd"``, ``"ilkd"``, ``"skd"``, ``"ilkd+skd"``, a plugin's).
        options: overrides of the distiller's config fields, e.g. ``{"latent_weight": 0.2}``; ``None`` for none.
        registry: where names are looked up; ``None`` uses the installed plugins'.

    Returns:
        the trainer's final report (``val_bpd``/``test_bpd`` in bits/dim, nats per example, parameters, ...), or
        ``None`` when the run stopped before ``train.steps``.

    Raises:
        DistillationMismatchError: teacher and student cannot be matched (level counts or latent shapes).
        ConfigError: bad options, or a teacher trained on other data.
        TrainingInterrupted: ``SIGINT`` or ``SIGTERM`` stopped the run after a checkpoint.
    """
    run = student_run(teacher, arch, preset, model, train, registry)
    trainer = DistillTrainer(run, out, registry=registry, teacher=teacher, distiller=loss, options=dict(options or {}))
    try:
        return trainer.fit()
    finally:
        trainer.close()
