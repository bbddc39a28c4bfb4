"""The shipped architectures on the 8x8 digits, side by side under one protocol (nfkit-eval), printed as a table.

Every architecture is trained by the same short recipe — ``nf train --arch A --data digits --set train.steps=STEPS``:
its ``digits`` preset and the trainer's default options (batch 64, AdamW at 1e-3 with 100 warm-up steps and cosine
decay, seed 0, one CPU thread) — MAF on the flattened digits (its build flattens image data) — and then evaluated by
``nfkit_eval.evaluate_run`` on the test split with the metrics ``bpd, iwbo, fid, kid, prc, interp``. A run folder
that already holds a finished run (``report.json``) is evaluated as it is, so training and evaluation can be done in
separate invocations; with ``--reuse-evals`` so can the evaluations.

Speed and size come from the shared timing method (``common.time_alternating``), the architectures taking turns:
sampling ``--speed-batch`` digits, and the discrete likelihood of as many test digits (the test split repeated), each
call under ``torch.no_grad``; the peak memory of one sampling call in a fresh process per architecture, in
alternating order.

    python benchmarks/eval_digits.py --runs /tmp/eval_digits_runs --output benchmarks/results/eval_digits.md
    python benchmarks/eval_digits.py --runs /tmp/quick --steps 20 -K 4 --archs glow,maf   # a quick check
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import common
import torch

METRICS = ["bpd", "iwbo", "fid", "kid", "prc", "interp"]
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


def timed_calls(run: Path, batch: int, device: str) -> tuple[Callable[[], object], Callable[[], object], int]:
    """The two calls the speed table times for the flow of ``run`` — sampling ``batch`` digits at T=1, and the
    discrete likelihood of ``batch`` test digits — and the flow's parameter count."""
    from nfkit_eval import DiscreteLikelihood, EvalContext, EvalOptions, load_run

    flow, data, _ = load_run(run, device=device)
    flow.eval()
    context = EvalContext(flow, data, EvalOptions(device=device, progress=False))
    x, condition = context.reference_batch(batch)
    likelihood = DiscreteLikelihood(flow, data.preprocessing)
    generator = torch.Generator(device=device).manual_seed(0)

    @torch.no_grad()
    def sample() -> object:
        return flow.sample(batch, context.sample_context(batch), generator=generator)

    @torch.no_grad()
    def log_prob() -> object:
        return likelihood.log_prob(x, condition)

    return sample, log_prob, sum(p.numel() for p in flow.parameters())


def sampling_memory(run: str, batch: int, device: str) -> float:
    """Peak memory (MiB) of one sampling call of ``batch`` digits, after an untimed one (which allocates the
    libraries' lazy state); run in a fresh process."""
    torch.set_num_threads(1)
    sample, _, _ = timed_calls(Path(run), batch, device)
    sample()
    with common.PeakMemory(torch.device(device)) as memory:
        sample()
    return memory.mib


def architectures(args) -> list[str]:
    """The architectures of ``--archs``, in order."""
    return [a.strip() for a in args.archs.split(",") if a.strip()]


def time_speed(args) -> dict:
    """Every architecture's sampling and likelihood calls, the architectures taking turns (one process's share of the
    rounds: see ``common.time_in_processes``), with its parameter count."""
    calls = {arch: timed_calls(args.runs / arch, args.speed_batch, args.device) for arch in architectures(args)}
    device = torch.device(args.device)
    return dict(params={arch: params for arch, (_, _, params) in calls.items()},
                sampling=common.time_variants({arch: sample for arch, (sample, _, _) in calls.items()}, args, device),
                likelihood=common.time_variants({arch: log_prob for arch, (_, log_prob, _) in calls.items()}, args,
                                                device))


def speed_table(args) -> str:
    """The speed and size table: every architecture's parameters, sampling and likelihood rates (median and range
    over the samples, the architectures taking turns) and the peak memory of sampling."""
    archs = architectures(args)
    memory = common.run_alternating(sampling_memory, {arch: (str(args.runs / arch), args.speed_batch, args.device)
                                                      for arch in archs}, args.memory_rounds,
                                    fresh_process=args.device == "cpu")
    timed = common.time_in_processes(time_speed, args)
    sampling, likelihood = timed["sampling"], timed["likelihood"]
    lines = [f"| architecture | parameters | sampling, samples/s | likelihood, examples/s | peak sampling memory "
             f"({common.PeakMemory.kind(args.device)}, MiB) |", "|---|---|---|---|---|"]
    lines += [f"| {arch} | {timed['params'][arch]:,} | {sampling[arch].rate(args.speed_batch).format()} | "
              f"{likelihood[arch].rate(args.speed_batch).format()} | {statistics.median(memory[arch]):.1f} |"
              for arch in archs]
    return "\n".join(lines) + "\n"


def main() -> None:
    from nfkit_eval import EvalOptions, Report, evaluate_run, side_by_side

    parser = common.make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of the run folders (one per architecture)")
    parser.add_argument("--archs", default=ARCHITECTURES, help=f"comma-separated (default: {ARCHITECTURES})")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of the shared recipe")
    parser.add_argument("-K", "--importance-samples", type=int, default=100, help="K of the importance-weighted bound")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation")
    parser.add_argument("--speed-batch", type=int, default=256,
                        help="digits per timed sampling or likelihood call (default: %(default)s, nf eval's "
                             "speed_large_batch)")
    parser.add_argument("--reuse-evals", action="store_true",
                        help="take an architecture's numbers from RUNS/<arch>-eval/eval.json when it was made with "
                             "the same options (to evaluate the architectures in separate invocations)")
    args = common.parse_args(parser)
    archs = architectures(args)
    stamp = common.Stamp("Architectures on digits, one protocol", args)
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
    speed = speed_table(args)
    text = (f"{stamp.render()}\n"
            f"Recipe: `nf train --arch A --data digits --set train.steps={args.steps}` (each architecture's `digits` "
            f"preset, the trainer's defaults); evaluation: `nf eval` metrics {', '.join(METRICS)} on the test split "
            f"(180 images), K={args.importance_samples}, seed {args.seed}, 180 generated samples at T=1, FD/KD in "
            f"the features of nfkit-eval's digits classifier (not comparable with published FIDs).\n\n"
            f"{table}\n" + "\n".join(f"- {note}" for note in notes) + "\n\n"
            f"Speed and size (batch {args.speed_batch}; the timed calls: sampling at T=1, and the discrete likelihood "
            f"of test digits, the split repeated to fill the batch):\n\n{speed}")
    common.write_report(args.output, text)


if __name__ == "__main__":
    main()
