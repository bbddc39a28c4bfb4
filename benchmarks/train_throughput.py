"""Training throughput (samples/s) and peak memory of ``nf train``'s default run, printed as a table.

The default run is ``nf train --arch glow --data digits`` (Glow's ``digits`` preset, the trainer's default options).
Each configuration runs in a fresh process, so that its peak memory is its own: it trains ``--warmup`` steps, then
``--steps`` timed steps through the public :class:`nfkit_core.train.Trainer` (data loading, preprocessing, forward,
backward, AdamW), and reports the trainer's own throughput measurement (``samples_per_s`` in ``metrics.jsonl``).

Peak memory is the process's peak resident set size on CPU (PyTorch and the data included) and
``torch.cuda.max_memory_allocated`` on CUDA.

    python benchmarks/train_throughput.py                        # glow on digits, 1 thread and all cores
    python benchmarks/train_throughput.py --markdown benchmarks/results/train_cpu.md     # and write the results
    python benchmarks/train_throughput.py --device cuda --threads 1                      # on a GPU
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import tempfile

import common
import torch

import nfkit_core


def measure(arch: str, data: str, batch_size: int, warmup: int, steps: int, device: str, threads: int) -> dict:
    """Train one configuration in this process and return its numbers."""
    from nfkit_core.plugins import PluginManager, get_registry
    from nfkit_core.train import Trainer, make_run_config, start_process

    registry = get_registry()
    if arch == "tiny":  # nfkit-core's test architecture, for a check that needs no architecture package
        import nfkit_core.testing.tiny as tiny

        manager = PluginManager(autoload=False)
        manager.register(tiny, "nf-testing")
        registry = manager.registry
    # One step more than is run, so that the final evaluation does not start; one log line covers the timed steps.
    train = {"steps": warmup + steps + 1, "batch_size": batch_size, "device": device, "cpu_threads": threads,
             "progress": False,
             "log_every": warmup + steps, "val_every": 10**9, "sample_every": 10**9, "checkpoint_every": 10**9}
    run = make_run_config(arch, data, train=train, registry=registry)
    # The trainer announces its plan on stdout; the table is this script's only output.
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(run, out, registry=registry, dist=start_process(run.train))  # sets the thread count
        trainer.fit(until=warmup)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.fit(until=warmup + steps)
        timed = trainer.metrics.rows[-1]
        assert timed["step"] == warmup + steps
    return {"arch": arch, "preset": run.preset, "data": data, "device": str(trainer.device), "threads": threads,
            "batch_size": batch_size, "parameters": sum(p.numel() for p in trainer.flow.parameters()),
            "steps": steps, "samples_per_s": timed["samples_per_s"],
            "ms_per_step": 1000 * batch_size / timed["samples_per_s"],
            "peak_mib": common.peak_memory_mib(trainer.device),
            "peak_kind": "cuda allocated" if trainer.device.type == "cuda" else "process RSS"}


def table(runs: list[list[dict]]) -> str:
    """One row per configuration: the median of its repeats, and their range."""
    header = ("| arch (preset) | data | device | threads | batch | parameters | samples/s: median (range) | "
              "ms/step (median) | peak memory |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    lines = []
    for repeats in runs:
        r = repeats[0]
        speeds = sorted(x["samples_per_s"] for x in repeats)
        median = statistics.median(speeds)
        lines.append(f"| {r['arch']} ({r['preset'] or 'defaults'}) | {r['data']} | {r['device']} | {r['threads']} | "
                     f"{r['batch_size']} | {r['parameters']:,} | {median:.0f} ({speeds[0]:.0f}-{speeds[-1]:.0f}) | "
                     f"{1000 * r['batch_size'] / median:.1f} | {max(x['peak_mib'] for x in repeats):.0f} MiB "
                     f"({r['peak_kind']}) |")
    return header + "\n".join(lines)


def main() -> None:
    parser = common.make_parser(__doc__.split("\n\n")[0], output_flag="--markdown",
                                output_help="also write the table, the machine and the command here")
    parser.add_argument("--arch", default="glow")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--batch-size", type=int, default=64, help="the trainer's default")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                        help="train.cpu_threads values to compare (CPU only)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per configuration")
    args = common.parse_args(parser)
    about = (f"{common.describe_hardware(args.device, threads=False)}; Python {platform.python_version()}, "
             f"torch {torch.__version__}, nfkit-core {nfkit_core.version()}")
    busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    runs = []
    for threads in args.threads:
        job = (args.arch, args.data, args.batch_size, args.warmup, args.steps, args.device, threads)
        runs.append(common.run_each(measure, [job] * args.repeats, fresh_process=True))
    text = table(runs)
    print(about)
    print(text)
    note = ("\nThe load average exceeded the number of CPUs: other processes competed for the cores while these "
            "numbers were taken, which the ranges reflect.\n" if busy else "")
    timed = (f"Timed: {args.steps} steps after {args.warmup} warm-up steps, through `nfkit_core.train.Trainer` (data "
             f"loading, preprocessing, forward, backward, AdamW), {args.repeats} fresh processes per row.")
    common.write_report(args.output, f"# Training throughput\n\n`{common.command_line()}`\n\n{about}.\n\n{text}\n\n"
                                     f"{timed}\n{note}")


if __name__ == "__main__":
    main()
