"""The shipped architectures on the 8x8 digits, side by side under one protocol (nfkit-eval), printed as a table.

Every architecture is trained by the same short recipe — ``nf train --arch A --data digits --set train.steps=STEPS``:
its ``digits`` preset and the trainer's default options (batch 64, AdamW at 1e-3 with 100 warm-up steps and cosine
decay, seed 0, one CPU thread) — MAF on the flattened digits (its build flattens image data) — and then evaluated by
``nfkit_eval.evaluate_run`` on the test split with the metrics ``bpd, iwbo, fid, kid, prc, interp, speed``. A run
folder that already holds a finished run (``report.json``) is evaluated as it is, so training and evaluation can be
done in separate invocations; with ``--reuse-evals`` so can the evaluations.

    python benchmarks/eval_digits.py --runs /tmp/eval_digits_runs --output benchmarks/results/eval_digits.md
    python benchmarks/eval_digits.py --runs /tmp/quick --steps 20 -K 4 --archs glow,maf   # a quick check
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import common
import torch

METRICS = ["bpd", "iwbo", "fid", "kid", "prc", "interp", "speed"]
ARCHITECTURES = "glow,maf,realnvp,tarflow,denseflow"


def train(arch: str, out: Path, steps: int) -> float:
    """Train ``arch`` on digits by the shared recipe into ``out``; returns the wall-clock seconds."""
    from nfkit_core.cli import main

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "--arch", arch, "--data", "digits", "--out", str(out), "--set", f"train.steps={steps}",
                     "--set", "train.progress=false"])
    if code != 0:
        raise RuntimeError(f"nf train --arch {arch} failed with exit code {code}")
    return time.perf_counter() - started


def main() -> None:
    from nfkit_eval import EvalOptions, Report, evaluate_run, side_by_side

    parser = common.make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of the run folders (one per architecture)")
    parser.add_argument("--archs", default=ARCHITECTURES, help=f"comma-separated (default: {ARCHITECTURES})")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of the shared recipe")
    parser.add_argument("-K", "--importance-samples", type=int, default=100, help="K of the importance-weighted bound")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation")
    parser.add_argument("--reuse-evals", action="store_true",
                        help="take an architecture's numbers from RUNS/<arch>-eval/eval.json when it was made with "
                             "the same options (to evaluate the architectures in separate invocations)")
    args = common.parse_args(parser)
    torch.set_num_threads(1)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    header = common.report_header("nfkit-eval on digits", args.device, False)
    reports, notes = [], []
    for arch in archs:
        run = args.runs / arch
        if not (run / "report.json").exists():
            seconds = train(arch, run, args.steps)
            notes.append(f"{arch}: trained here in {seconds:.0f} s")
        trained = json.loads((run / "report.json").read_text())
        if trained["steps"] != args.steps:
            raise SystemExit(f"{run} was trained for {trained['steps']} steps, not {args.steps}")
        options = EvalOptions(seed=args.seed, importance_samples=args.importance_samples, device=args.device,
                              progress=False)
        out = args.runs / f"{arch}-eval"
        if args.reuse_evals and (out / "eval.json").exists():
            report = Report.from_dict(json.loads((out / "eval.json").read_text()))
            if report.header["options"] != json.loads(json.dumps(options.to_dict())) or \
                    report.header["metrics_run"] != METRICS:
                raise SystemExit(f"{out / 'eval.json'} was made with other options or metrics; evaluate again")
        else:
            report = evaluate_run(run, METRICS, options, out_dir=out)
        reports.append(report)
        notes.append(f"{arch}: `{trained['preprocessing']}` preprocessing, {trained['parameters']:,} parameters, "
                     f"trained at {trained['train_samples_per_s']:.0f} samples/s; evaluation took "
                     f"{sum(report.header['seconds'].values()):.0f} s (" + ", ".join(
                         f"{name} {seconds:.0f} s" for name, seconds in report.header["seconds"].items()) + ")")
    table = side_by_side(reports, archs)
    text = (f"# Architectures on digits, one protocol\n\n{header}\n\n"
            f"Recipe: `nf train --arch A --data digits --set train.steps={args.steps}` (each architecture's `digits` "
            f"preset, the trainer's defaults); evaluation: `nf eval` metrics {', '.join(METRICS)} on the test split "
            f"(180 images), K={args.importance_samples}, seed {args.seed}, 180 generated samples at T=1, FD/KD in "
            f"the features of nfkit-eval's digits classifier (not comparable with published FIDs).\n\n"
            f"{table}\n" + "\n".join(f"- {note}" for note in notes) + "\n")
    print(text)
    common.write_report(args.output, text)


if __name__ == "__main__":
    main()
