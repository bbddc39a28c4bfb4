"""Training throughput (samples/s) and peak memory of ``nf train``'s default run, for one thread and all cores.

The default run is ``nf train --arch glow --data digits`` (Glow's ``digits`` preset, the trainer's default options).
One :class:`nfkit_core.train.Trainer` per thread count trains in this process; they take turns with the method of
``common.py`` (benchmarks/README.md). A call trains ``--chunk`` steps through the public ``Trainer.fit`` (data
loading, preprocessing, forward, backward, AdamW) and counts the trainer's own step timer, which leaves out the
checkpoint that ``fit`` writes when it stops; the table gives the median samples/s with its range, and the speed-up
of each thread count over one thread (ratio of medians, range of the per-round ratios).

Peak memory is the whole process's peak resident set on CPU (PyTorch and the data included), in a fresh process per
thread count that trains ``--warmup`` + ``--chunk`` steps, the thread counts taking turns; on CUDA
``torch.cuda.max_memory_allocated``.

    python benchmarks/train_throughput.py                        # glow on digits, 1 thread and all cores
    python benchmarks/train_throughput.py --output benchmarks/results/train_cpu.md     # and write the results
    python benchmarks/train_throughput.py --tiny                 # a seconds-long check that the script works
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import statistics
import tempfile

import common
import torch

import nfkit_core


def make_trainer(arch: str, data: str, batch_size: int, device: str, threads: int, out: str):
    """A trainer of ``arch`` on ``data`` with the trainer's default options, except that it never validates, draws
    figures or checkpoints on its own, and logs at the end of every ``fit`` call."""
    from nfkit_core.plugins import PluginManager, get_registry
    from nfkit_core.train import Trainer, make_run_config, start_process

    registry = get_registry()
    if arch == "tiny":  # nfkit-core's test architecture, for a check that needs no architecture package
        import nfkit_core.testing.tiny as tiny

        manager = PluginManager(autoload=False)
        manager.register(tiny, "nf-testing")
        registry = manager.registry
    never = 10**9
    train = {"steps": never, "batch_size": batch_size, "device": device, "cpu_threads": threads, "progress": False,
             "log_every": never, "val_every": never, "sample_every": never, "checkpoint_every": never}
    run = make_run_config(arch, data, train=train, registry=registry)
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer announces its plan; the table is the only output
        # The process set-up of nf train (device, thread count); train() then sets each call's thread count.
        return Trainer(run, out, registry=registry, dist=start_process(run.train))


def train(trainer, threads: int, steps: int) -> float:
    """Train ``steps`` more steps on ``threads`` threads; the seconds the trainer's step timer measured."""
    torch.set_num_threads(threads)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.fit(until=trainer.step + steps)
    timed = trainer.metrics.rows[-1]
    assert timed["step"] == trainer.step, "fit() logs at the step where it stops"
    return steps * trainer.config.batch_size / timed["samples_per_s"]


def peak_memory(arch: str, data: str, batch_size: int, device: str, threads: int, steps: int) -> float:
    """The process's peak memory (MiB) after ``steps`` training steps (run in a fresh process)."""
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(arch, data, batch_size, device, threads, out)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        train(trainer, threads, steps)
        if trainer.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_trainers(args) -> dict:
    """One trainer per thread count, taking turns (one process's share of the rounds: see
    ``common.time_in_processes``); with the model's preset, parameter count and device."""
    names = thread_names(args.thread_counts)
    with tempfile.TemporaryDirectory() as out:
        trainers = {t: make_trainer(args.arch, args.data, args.batch_size, args.device, t, f"{out}/{t}")
                    for t in args.thread_counts}
        first = trainers[args.thread_counts[0]]
        timings = common.time_variants({names[t]: (lambda t=t: train(trainers[t], t, args.chunk))
                                        for t in args.thread_counts}, args, first.device, self_timed=True)
    return dict(timings=timings, preset=first.run.preset or "defaults", device=str(first.device),
                params=sum(p.numel() for p in first.flow.parameters()))


def thread_names(counts: list[int]) -> dict[int, str]:
    """Each thread count's row name: ``1 thread``, ``2 threads``."""
    return {threads: f"{threads} thread{'s' if threads > 1 else ''}" for threads in counts}


def main() -> None:
    parser = common.make_parser(__doc__.split("\n\n")[0], threads_option=False,
                                output_help="also write the table, the machine and the command here")
    parser.add_argument("--arch", default="glow")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--batch-size", type=int, default=64, help="the trainer's default (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=10,
                        help="training steps per timed call of Trainer.fit (default: %(default)s)")
    parser.add_argument("--threads", dest="thread_counts", type=int, nargs="+",
                        default=sorted({1, os.cpu_count() or 1}),
                        help="train.cpu_threads values to compare (CPU only; default: %(default)s)")
    args = common.parse_args(parser)
    if args.tiny:
        args.chunk = 2
    stamp = common.Stamp("Training throughput of nf train", args)
    names = thread_names(args.thread_counts)
    job = (args.arch, args.data, args.batch_size, args.device)
    counts = args.thread_counts
    memory = common.run_alternating(
        peak_memory, {names[t]: (*job, t, (args.warmup + 1) * args.chunk) for t in counts}, args.memory_rounds)
    timed = common.time_in_processes(time_trainers, args)
    timings = timed["timings"]
    kind = "cuda allocated" if timed["device"].startswith("cuda") else "process peak RSS"
    lines = [f"| arch (preset) | data | device | threads | batch | parameters | samples/s | ms/step | "
             f"speed-up over {names[counts[0]]} | peak memory ({kind}, MiB) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t in counts:
        timing, name = timings[names[t]], names[t]
        speedup = "baseline" if t == counts[0] else timings.speedup(name, names[counts[0]]).format(suffix="x")
        lines.append(f"| {args.arch} ({timed['preset']}) | {args.data} | {timed['device']} | {t} | "
                     f"{args.batch_size} | {timed['params']:,} | "
                     f"{timing.rate(args.chunk * args.batch_size).format()} | "
                     f"{1000 * timing.spread.median / args.chunk:.1f} | {speedup} | "
                     f"{statistics.median(memory[name]):.0f} |")
    about = (f"a call: {args.chunk} steps of `Trainer.fit` (data loading, preprocessing, forward, backward, AdamW), "
             f"timed by the trainer's step timer; nfkit-core {nfkit_core.version()}")
    common.write_report(args.output, stamp.render([about], threads="per row") + "\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
