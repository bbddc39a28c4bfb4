"""``nf distill``: train a student flow from a teacher run by knowledge distillation (or resume one).

``nf distill --teacher RUN --out DIR [--arch NAME] [--student-preset P] [--set model.KEY=V | train.KEY=V |
distill.KEY=V ...] [--loss lkd|ilkd|skd|ilkd+skd] [--lambdas L0,L1,L2]`` starts; ``nf distill --resume DIR [--set
train.steps=N]`` continues. The output is an ordinary run folder (``nf sample``, ``nf eval``) plus ``distill.json``.
Ctrl-C or ``SIGTERM`` stops it as ``nf train`` (:func:`nfkit_core.cli.training.run_training`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nfkit_core import extras
from nfkit_core.checkpoint import CHECKPOINT_NAME, read_checkpoint
from nfkit_core.cli.settings import parse_assignments, parse_value
from nfkit_core.cli.training import run_training
from nfkit_core.errors import ConfigError
from nfkit_core.plugins import get_registry
from nfkit_core.specs import CommandSpec
from nfkit_core.train import RunConfig, TrainConfig, start_process
from nfkit_core.train.artifacts import check_run_folder
from nfkit_distill.api import student_run
from nfkit_distill.trainer import DistillTrainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", metavar="RUN", help="the teacher's run folder (or checkpoint file)")
    parser.add_argument("--arch", metavar="NAME", help="the student's architecture (default: the teacher's)")
    parser.add_argument("--student-preset", metavar="NAME", help="start the student's model options from this preset")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="model.KEY (student), train.KEY, or distill.KEY (the distiller's options, e.g. "
                             "distill.nll_unit=nats, distill.latent_distance=l1, distill.shared_split_noise=true); "
                             "repeatable")
    parser.add_argument("--loss", metavar="NAME", default="ilkd",
                        help="the registered distiller: lkd, ilkd, skd, ilkd+skd or a plugin's (default: ilkd)")
    parser.add_argument("--lambdas", metavar="L0,L1,L2",
                        help="weights of NLL, latent term (LKD/ILKD) and SKD (eq. 15); default: the distiller's")
    parser.add_argument("--out", metavar="DIR", help="the student's run folder")
    parser.add_argument("--resume", metavar="DIR", help="continue the distillation run in DIR")


def _options(args: argparse.Namespace, config_class: type) -> dict:
    options = parse_assignments([a for a in args.set if a.startswith("distill.")], {"distill": config_class})
    options = options["distill"]
    if args.lambdas:
        try:
            weights = [float(parse_value(w)) for w in args.lambdas.split(",")]
        except (TypeError, ValueError):
            weights = []
        if len(weights) != 3:
            raise ConfigError(f"--lambdas expects three numbers L0,L1,L2 (NLL, latent, SKD), got {args.lambdas!r}")
        options.update(nll_weight=weights[0], latent_weight=weights[1], sample_weight=weights[2])
    return options


def _resume(args: argparse.Namespace, registry) -> DistillTrainer:
    given = [f for f, v in (("--teacher", args.teacher), ("--arch", args.arch), ("--out", args.out),
                            ("--student-preset", args.student_preset), ("--lambdas", args.lambdas)) if v]
    if given or any(a.startswith("distill.") for a in args.set):
        raise ConfigError(f"--resume DIR continues with the stored configuration; only --set train.KEY=VALUE may "
                          f"change it (got {', '.join(given) or 'distill.* options'})")
    overrides = parse_assignments(args.set, {"train": TrainConfig})["train"]
    folder = check_run_folder(args.resume, force=True)
    state = read_checkpoint(folder / CHECKPOINT_NAME)
    run = RunConfig.from_checkpoint(state, overrides, registry)
    return DistillTrainer(run, folder, registry=registry, checkpoint=state, dist=start_process(run.train))


def _start(args: argparse.Namespace, registry) -> DistillTrainer:
    if not args.teacher or not args.out:
        raise ConfigError("nf distill needs --teacher RUN and --out DIR (or --resume DIR)")
    check_run_folder(args.out)
    if (Path(args.out) / CHECKPOINT_NAME).exists():
        raise ConfigError(f"{args.out} already holds a run; continue it with --resume {args.out} or choose "
                          f"another --out")
    spec = registry.distillers.get(args.loss)
    state = read_checkpoint(args.teacher)
    arch = args.arch or state["architecture"]
    others = [a for a in args.set if not a.startswith("distill.")]
    sections = parse_assignments(others, {"model": registry.architectures.get(arch).config_class,
                                          "train": TrainConfig})
    run = student_run(args.teacher, arch, args.student_preset, sections["model"], sections["train"], registry)
    return DistillTrainer(run, args.out, registry=registry, dist=start_process(run.train), teacher=args.teacher,
                          distiller=args.loss, options=_options(args, spec.config_class))


def run(args: argparse.Namespace) -> int:
    missing = extras.missing()
    if missing:
        raise extras.MissingExtraError(f"distillation trains a flow and needs {', '.join(missing)}, not installed: "
                                       f"{extras.INSTALL_HINT}")
    registry = get_registry()
    return run_training("distill", lambda: _resume(args, registry) if args.resume else _start(args, registry))


COMMAND = CommandSpec("distill", "Distill a teacher run into a smaller student flow (LKD, ILKD, SKD); writes an "
                      "ordinary run folder.", add_arguments, run)
