"""``nf eval``: evaluate trained flows and write ``eval.json``, ``eval.md`` and figures.

``nf eval RUN_OR_CHECKPOINT [MORE ...] [--metrics bpd,iwbo,fid,kid,prc,interp] [--split test] [--out DIR]``. With one
run the report goes to ``--out`` (default ``RUN/eval``); with several, each run's report goes to ``RUN/eval`` (or
``--out/<name>``) and one table puts them side by side (printed, and written to ``--out/eval.md`` when given).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nfkit_core.cli.settings import parse_assignment
from nfkit_core.errors import MissingFileError
from nfkit_core.plugins import CommandSpec, get_registry
from nfkit_eval.context import EXTRACTORS, EvalOptions
from nfkit_eval.evaluate import evaluate_run
from nfkit_eval.report import side_by_side, write_atomically

__all__ = ["COMMAND"]


def _metric_lines() -> str:
    lines = []
    for entry in get_registry().metrics.entries():
        metric = entry.spec
        default = ", default" if metric.default else ""
        lines.append(f"  {metric.name:<8} {metric.description} [{metric.data}{default}; {entry.distribution}]")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("metrics (--metrics NAME,NAME; by default those marked default that fit the data):\n"
                     + _metric_lines() + "\n\nSee the docs page 'Evaluating a flow' for every protocol.")
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_CHECKPOINT", help="run folders or checkpoint files")
    parser.add_argument("--metrics", metavar="NAMES", help="comma-separated metric names (see below)")
    parser.add_argument("--split", default="test", help="the held-out split to evaluate on (default: test)")
    parser.add_argument("--out", metavar="DIR", help="where to write (default: RUN/eval for each run)")
    parser.add_argument("--set", metavar="data.KEY=VALUE", action="append", default=[],
                        help="change a dataset option, e.g. data.root=PATH when the data moved")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default: 0)")
    parser.add_argument("-K", "--importance-samples", type=int, default=100, metavar="K",
                        help="draws of the importance-weighted bound (default: 100)")
    parser.add_argument("--sample-batch-size", type=int, default=16, metavar="N",
                        help="noise draws per forward pass of that bound (default: 16)")
    parser.add_argument("--max-examples", type=int, metavar="N", help="likelihood on at most N held-out examples")
    parser.add_argument("-n", "--num-samples", type=int, metavar="N",
                        help="generated samples for sample metrics (default: the size of the held-out split)")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T", help="sampling temperature")
    parser.add_argument("--extractor", choices=EXTRACTORS, default="auto",
                        help="features of FID/KID/PRC: auto (Inception-v3 for images >= 32x32 whose weights are "
                             "found, else the dataset classifier), inception, classifier")
    parser.add_argument("--inception-weights", metavar="FILE",
                        help="the FID Inception-v3 weights pt_inception-2015-12-05-6726825d.pth (never downloaded)")
    parser.add_argument("--kid-subsets", type=int, default=100, metavar="N", help="KID subsets (default: 100)")
    parser.add_argument("--kid-subset-size", type=int, metavar="N",
                        help="rows per KID subset (default: min(1000, samples))")
    parser.add_argument("--speed-repeats", type=int, default=10, metavar="N",
                        help="timed batches of the speed metric, after one warm-up batch (default: 10)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="examples per forward pass (default: 256)")
    parser.add_argument("--weights", choices=("auto", "ema", "model"), default="auto",
                        help="moving-average or trained weights (auto: the average when the checkpoint has one)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _data_overrides(assignments: list[str]) -> dict:
    """``data.KEY=VALUE`` (or ``KEY=VALUE``) assignments as dataset options."""
    pairs = (parse_assignment(assignment) for assignment in assignments)
    return {key.removeprefix("data."): value for key, value in pairs}


def run(args: argparse.Namespace) -> int:
    options = EvalOptions(seed=args.seed, max_examples=args.max_examples, importance_samples=args.importance_samples,
                          sample_batch_size=args.sample_batch_size, num_samples=args.num_samples,
                          temperature=args.temperature, extractor=args.extractor,
                          inception_weights=args.inception_weights, kid_subsets=args.kid_subsets,
                          kid_subset_size=args.kid_subset_size, speed_repeats=args.speed_repeats,
                          batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    metrics = [name.strip() for name in args.metrics.split(",") if name.strip()] if args.metrics else None
    overrides = _data_overrides(args.set)
    for run_path in args.runs:
        if not Path(run_path).exists():
            raise MissingFileError(f"no run folder or checkpoint at {run_path}")
    several = len(args.runs) > 1
    reports = []
    for run_path in args.runs:
        name = Path(run_path).stem if Path(run_path).is_file() else Path(run_path).name
        out = (Path(args.out) / name if several else Path(args.out)) if args.out else None
        report = evaluate_run(run_path, metrics, options, split=args.split, out_dir=out, data_overrides=overrides,
                              weights=args.weights)
        reports.append(report)
        where = out or (Path(run_path) if Path(run_path).is_dir() else Path(run_path).parent) / "eval"
        print(report.to_markdown().split("## Protocols")[0].rstrip())
        print(f"\nreport: {where / 'eval.json'} and {where / 'eval.md'}")
        for figure, path in report.figures.items():
            print(f"{figure}: {path}")
    if several:
        labels = [f"{r.header.get('architecture', '?')} ({r.subject})" for r in reports]
        table = side_by_side(reports, labels)
        print("\n" + table)
        if args.out:
            path = write_atomically(Path(args.out) / "eval.md", "# Side by side\n\n" + table)
            print(f"table: {path}")
    return 0


COMMAND = CommandSpec("eval", "Evaluate trained flows: bits/dim and bounds, FID/FD, KID, precision/recall, latent "
                              "interpolation, speed.", add_arguments, run)
