"""``nf train``: train a registered architecture on a registered dataset, or resume a run.

``nf train --arch NAME --data NAME --out DIR [--preset P] [--config FILE.toml] [--set key=value ...]`` starts a run;
``nf train --resume DIR [--set train.steps=N]`` continues one. ``nf train --arch NAME --data NAME --help`` lists the
options of that architecture and dataset next to the training options. Under ``torchrun`` every process runs the
same command and they train together (DistributedDataParallel).

This command owns the process: it joins the process group and sets the CPU thread count
(:func:`nfkit_core.train.start_process`) before it builds the :class:`~nfkit_core.train.Trainer`. Ctrl-C or ``SIGTERM``
finishes the current step, writes a checkpoint, prints how to resume and exits with 130 or 143; a second Ctrl-C
aborts at once (:func:`nfkit_core.cli.training.run_training`, shared with ``nf distill``).
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from nfkit_core import extras
from nfkit_core.checkpoint import CHECKPOINT_NAME, read_checkpoint
from nfkit_core.cli.settings import describe_fields, load_toml, parse_assignments, section_values
from nfkit_core.cli.training import run_training
from nfkit_core.errors import ConfigError
from nfkit_core.plugins.manager import get_registry
from nfkit_core.specs import CommandSpec
from nfkit_core.train import RunConfig, TrainConfig, Trainer, make_run_config, start_process
from nfkit_core.train.artifacts import check_run_folder

DEFAULT_DATASET = "digits"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # --help is answered in run(), after --arch and --data are known, so that it can list their options; the help
    # texts state the defaults that matter.
    parser.formatter_class = argparse.HelpFormatter
    parser.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS,
                        help="show this help, with the options of --arch and --data when given, and exit")
    parser.add_argument("--arch", metavar="NAME", help="the architecture (see `nf plugins`)")
    parser.add_argument("--data", metavar="NAME", help=f"the dataset (default: {DEFAULT_DATASET})")
    parser.add_argument("--preset", metavar="NAME",
                        help="start the model options from this preset of the architecture (default: the preset "
                             "named after the dataset, when there is one)")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="a TOML file with arch, dataset, preset and [model], [data], [train] tables")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="set an option: model.KEY, data.KEY, train.KEY, or a bare KEY that only one of them "
                             "has; repeatable, overrides --config")
    parser.add_argument("--out", metavar="DIR", help="the run folder to write (checkpoint, metrics, figures, report)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    parser.add_argument("--force", action="store_true",
                        help="write into an --out folder that is not empty and not an nf run")
    parser.set_defaults(_train_parser=parser)


def _help(args: argparse.Namespace) -> str:
    registry = get_registry()
    parts = [args._train_parser.format_help(),
             f"architectures: {', '.join(registry.architectures.names()) or 'none installed'}",
             f"datasets: {', '.join(registry.datasets.names())}", ""]
    if args.arch:
        spec = registry.architectures.get(args.arch)
        described = f" ({spec.description})" if spec.description else ""
        heading = f"model options of architecture {spec.name!r}{described}:"
        parts += [textwrap.fill(heading, 100, subsequent_indent="  "),
                  describe_fields(spec.config_class, "model", spec.presets,
                                  train_defaults=spec.train_defaults), ""]
    dataset = registry.datasets.get(args.data or DEFAULT_DATASET)
    parts += [f"data options of dataset {dataset.name!r}:", describe_fields(dataset.config_class, "data"), "",
              "training options:", describe_fields(TrainConfig, "train")]
    return "\n".join(parts)


def _resume(args: argparse.Namespace) -> Trainer:
    given = [flag for flag, value in (("--arch", args.arch), ("--data", args.data), ("--preset", args.preset),
                                      ("--config", args.config), ("--out", args.out)) if value]
    if given:
        raise ConfigError(f"--resume DIR continues the run in DIR with its stored configuration; {', '.join(given)} "
                         f"cannot be combined with it (change training options with --set train.KEY=VALUE)")
    overrides = parse_assignments(args.set, {"train": TrainConfig})["train"]
    folder = check_run_folder(args.resume, force=True)
    state = read_checkpoint(folder / CHECKPOINT_NAME)
    registry = get_registry()
    run = RunConfig.from_checkpoint(state, overrides, registry)
    return Trainer(run, folder, registry=registry, checkpoint=state, dist=start_process(run.train))


def _start(args: argparse.Namespace) -> Trainer:
    registry = get_registry()
    file_values = load_toml(args.config) if args.config else {}
    arch = args.arch or file_values.get("arch")
    if not arch:
        raise ConfigError(f"choose an architecture with --arch NAME; available: "
                         f"{', '.join(registry.architectures.names()) or 'none (install an nfkit-* architecture)'}")
    dataset = args.data or file_values.get("dataset") or DEFAULT_DATASET
    arch_spec = registry.architectures.get(arch)
    data_spec = registry.datasets.get(dataset)
    if not args.out:
        raise ConfigError("choose a run folder with --out DIR")
    check_run_folder(args.out, force=args.force)
    if (Path(args.out) / CHECKPOINT_NAME).exists():
        raise ConfigError(f"{args.out} already holds a run ({CHECKPOINT_NAME}); continue it with --resume "
                         f"{args.out} or choose another --out")
    assignments = parse_assignments(args.set, {"model": arch_spec.config_class, "data": data_spec.config_class,
                                               "train": TrainConfig})
    run = make_run_config(arch, dataset, model=section_values(file_values, assignments, "model"),
                          data=section_values(file_values, assignments, "data"),
                          train=section_values(file_values, assignments, "train"),
                          preset=args.preset or file_values.get("preset"), registry=registry)
    return Trainer(run, args.out, registry=registry, dist=start_process(run.train))


def run(args: argparse.Namespace) -> int:
    if getattr(args, "help", False):
        print(_help(args))
        return 0
    missing = extras.missing()
    if missing:
        raise extras.MissingExtraError(f"training needs {', '.join(missing)}, not installed: {extras.INSTALL_HINT}")
    return run_training("train", lambda: _resume(args) if args.resume else _start(args))


COMMAND = CommandSpec("train", "Train a flow architecture on a dataset (or resume a run); writes checkpoint, "
                      "metrics, sample grids, curves and a bits/dim report.", add_arguments, run)
