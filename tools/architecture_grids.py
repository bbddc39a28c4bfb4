"""Draw the figures of docs/guides/architectures.rst from real trained models: a sample grid per image architecture,
the learned density of MAF on 2-D data.

Every model is trained by ``benchmarks/eval_digits.py``'s recipe, ``nf train --arch A --data D --set
train.steps=STEPS`` (the architecture's preset for the data, the trainer's other defaults, seed 0), into RUNS/A:

* ``glow``, ``tarflow``, ``denseflow``, ``realnvp``: scikit-learn's 8x8 digits (their ``digits`` presets); the grid
  is ``nf sample RUNS/A -n 64 --seed 0 --out OUT/A.png`` (TarFlow with ``--set denoise=true``, its sampling recipe).
* ``maf``: tabular, so 2-D data instead: ``toy2d``'s moons with the ``tabular-small`` preset; the figure is its
  density on a grid next to its samples.

A run folder that already holds a finished run is used as it is, after checking that it was trained by this recipe
with the installed architecture's current preset (architecture, dataset, model config, steps and optimiser settings);
otherwise the script stops and names the difference. ``OUT/grids.json`` records, per architecture, the command, the
steps and the test bits/dim (MAF: also the test negative log-likelihood in nats) that the page's captions quote;
``integration_tests/test_architecture_grids.py`` checks the captions against it.

    python tools/architecture_grids.py --runs /tmp/architecture_runs --out docs/guides/grids
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
from pathlib import Path

import torch

DIGITS_ARCHITECTURES = ("glow", "tarflow", "denseflow", "realnvp")
ARCHITECTURES = (*DIGITS_ARCHITECTURES, "maf")
DATA = {"maf": ("toy2d", "tabular-small")}  # architecture -> (dataset, preset); the others: digits, their preset
SAMPLE_OPTIONS = {"tarflow": ["--set", "denoise=true"]}
# Training options that change how a run is carried out, not what it learns.
RUNTIME_OPTIONS = {"device", "cpu_threads", "progress", "num_workers", "log_every", "val_every", "sample_every",
                   "checkpoint_every", "num_samples", "sample_temperature", "eval_samples", "eval_sample_batch_size",
                   "val_max_examples", "compile"}


def train_command(arch: str, steps: int, out: Path) -> list[str]:
    """The ``nf train`` command of the recipe."""
    dataset, preset = DATA.get(arch, ("digits", None))
    return ["nf", "train", "--arch", arch, "--data", dataset, *(["--preset", preset] if preset else []),
            "--set", f"train.steps={steps}", "--out", str(out)]


def nf(args: list[str]) -> None:
    """Run an ``nf`` command in this process, its output hidden; a failure stops the script with its message."""
    from nfkit_core.cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(args)
    if code != 0:
        raise SystemExit(f"nf {shlex.join(args)} failed with exit status {code}:\n{output.getvalue()[-2000:]}")


def recipe_differences(arch: str, steps: int, run: Path) -> list[str]:
    """What in the finished run at ``run`` differs from the recipe with the installed preset (empty: it is the
    recipe's run)."""
    from nfkit_core.train import make_run_config

    dataset, preset = DATA.get(arch, ("digits", None))
    expected = json.loads(json.dumps(make_run_config(arch, dataset, preset=preset, train={"steps": steps}).to_dict()))
    found = json.loads((run / "run.json").read_text())
    differences = [f"{key}: {found.get(key)!r}, the recipe {expected[key]!r}"
                   for key in ("architecture", "preset", "dataset", "model_config", "data_config")
                   if found.get(key) != expected[key]]
    found_train, expected_train = found["train_config"], expected["train_config"]
    differences += [f"train.{key}: {found_train[key]!r}, the recipe {expected_train[key]!r}"
                    for key in sorted(set(found_train) & set(expected_train) - RUNTIME_OPTIONS)
                    if found_train[key] != expected_train[key]]
    return differences


def finished_run(arch: str, steps: int, runs: Path) -> dict:
    """Train ``arch`` by the recipe into RUNS/arch unless a finished run of the recipe is there; its report."""
    run = runs / arch
    if not (run / "report.json").exists():
        print(f"{arch}: training, {shlex.join(train_command(arch, steps, run))}", flush=True)
        nf([*train_command(arch, steps, run)[1:], "--set", "train.progress=false"])
    differences = recipe_differences(arch, steps, run)
    if differences:
        raise SystemExit(f"{run} was not trained by the recipe ({'; '.join(differences)}); remove it or pass "
                         f"another --runs")
    return json.loads((run / "report.json").read_text())


def maf_density_figure(run: Path, path: Path) -> None:
    """The MAF's density on a grid over [-4, 4]^2 and 2,000 of its samples, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfkit_core.checkpoint import load_checkpoint

    flow = load_checkpoint(run)
    side = torch.linspace(-4, 4, 200)
    xx, yy = torch.meshgrid(side, side, indexing="xy")
    with torch.no_grad():
        density = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], dim=1)).exp().reshape(200, 200)
        samples = flow.sample(2000, generator=torch.Generator().manual_seed(0))
    figure, (left, right) = plt.subplots(1, 2, figsize=(7, 3.4), sharex=True, sharey=True)
    left.imshow(density, origin="lower", extent=(-4, 4, -4, 4))
    left.set_title("density p(x)")
    right.scatter(*samples.T, s=1, alpha=0.5)
    right.set_title("2,000 samples")
    for axis in (left, right):
        axis.set_aspect("equal")
        axis.set_xlim(-4, 4)
        axis.set_ylim(-4, 4)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True,
                        help="folder of the run folders, one per architecture (finished runs of the recipe are "
                             "reused)")
    parser.add_argument("--out", type=Path, required=True, help="where the PNG files and grids.json go")
    parser.add_argument("--archs", default=",".join(ARCHITECTURES),
                        help=f"comma-separated architectures (default: {','.join(ARCHITECTURES)})")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of the recipe (default: 1000)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    archs = [arch.strip() for arch in args.archs.split(",") if arch.strip()]
    unknown = sorted(set(archs) - set(ARCHITECTURES))
    if unknown:
        raise SystemExit(f"--archs: unknown {unknown}; choose from {', '.join(ARCHITECTURES)}")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "grids.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    for arch in archs:
        report = finished_run(arch, args.steps, args.runs)
        picture = args.out / f"{arch}.png"
        if arch in DIGITS_ARCHITECTURES:
            options = ["-n", "64", "--seed", "0", *SAMPLE_OPTIONS.get(arch, [])]
            nf(["sample", str(args.runs / arch), *options, "--out", str(picture)])
            figure = shlex.join(["nf", "sample", "RUN", *options, "--out", picture.name])
        else:
            maf_density_figure(args.runs / arch, picture)
            figure = "density on a 200 x 200 grid over [-4, 4]^2 and 2,000 samples (seed 0)"
        record[arch] = {"train": shlex.join(train_command(arch, args.steps, Path("RUN"))), "steps": report["steps"],
                        "test_bpd": round(report["test_bpd"], 2), "figure": figure,
                        "parameters": report["parameters"]}
        if arch not in DIGITS_ARCHITECTURES:  # continuous data: nats per example say more than bits/dim
            record[arch]["test_nats"] = round(report["test_nats"], 2)
        print(f"{arch}: {picture} ({report['steps']} steps, test {report['test_bpd']:.2f} bits/dim)", flush=True)
    record_path.write_text(json.dumps(dict(sorted(record.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
