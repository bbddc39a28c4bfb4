"""Plumbing shared by the benchmark scripts: options, devices, timing, memory, processes and the report.

The scripts import it as ``common`` (Python puts a script's own folder first on ``sys.path``), so each one still runs
as ``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def make_parser(description: str, *, output_flag: str = "--output", output_help: str = "Markdown file for the table",
                bf16_help: str | None = None) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has: ``--device``, the Markdown output file and, where ``bf16_help``
    is given, ``--bf16``. The output file is ``args.output`` whatever its flag is called."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    if bf16_help is not None:
        parser.add_argument("--bf16", action="store_true", help=bf16_help)
    parser.add_argument(output_flag, dest="output", type=Path, default=None, metavar="FILE", help=output_help)
    return parser


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line, rejecting a CUDA device that is not there.

    bf16 autocast is accepted on CPU too; it pays off there only on CPUs with native bf16 arithmetic (AVX512-BF16 or
    AMX), elsewhere oneDNN emulates it and it is slower than fp32.
    """
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    return args


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read afterwards covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on ``device`` when ``bf16`` is set, a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def seconds_per_call(fn: Callable[[], Any], device: torch.device, calls: int, warmup: int = 1) -> float:
    """Wall-clock seconds per call of ``fn``, averaged over ``calls`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def best_seconds_per_call(fns: dict[str, Callable[[], Any]], device: torch.device, calls: int, rounds: int,
                          warmup: int = 1) -> dict[str, float]:
    """Seconds per call of each of ``fns``, which take turns: after ``warmup`` calls of each, ``rounds`` rounds in
    which every function runs ``calls`` times (in reverse order every other round). The best round of each is
    reported: on a shared machine it is the one least slowed down by other work, and taking turns exposes every
    function to the same background load."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for round_ in range(rounds):
        for name in (list(fns) if round_ % 2 == 0 else list(reversed(fns))):
            best[name] = min(best[name], seconds_per_call(fns[name], device, calls, warmup=0))
    return best


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mib(device: torch.device) -> float:
    """The peak memory so far: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak resident set on CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()


class PeakMemory:
    """Peak memory (MiB, in ``.mib``) of a ``with`` block: on CUDA the peak allocated memory, on CPU the growth of the
    process's peak resident set. The latter never goes down, so measure each model in a fresh process
    (:func:`run_each`)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = 0.0

    @staticmethod
    def kind(device: str) -> str:
        """What ``.mib`` is on ``device``, for a table's column title."""
        return "peak allocated" if device.startswith("cuda") else "peak RSS growth"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._baseline = 0.0 if self.device.type == "cuda" else peak_rss_mib()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mib = peak_memory_mib(self.device) - self._baseline


def run_each(fn: Callable[..., T], jobs: Sequence[tuple], fresh_process: bool) -> list[T]:
    """``fn(*job)`` for every job, one after the other; with ``fresh_process`` each in its own spawned process, so that
    its peak memory is its own (``fn`` must then be a module-level function and its results picklable)."""
    if not fresh_process:
        return [fn(*job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return [pool.apply(fn, job) for job in jobs]


def add_setup_arguments(parser: argparse.ArgumentParser, setups: Sequence[str], *, train_steps: int, repeats: int,
                        repeats_help: str) -> None:
    """The options of a benchmark that trains and samples named setups: ``--configs``, ``--train-steps``,
    ``--repeats`` and ``--threads`` (see :func:`run_setups`)."""
    parser.add_argument("--configs", nargs="+", default=list(setups), choices=list(setups))
    parser.add_argument("--train-steps", type=int, default=train_steps)
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")


def run_setups(run_setup: Callable[[str, str, bool, int, int, int], T], args: argparse.Namespace) -> list[T]:
    """``run_setup(name, device, bf16, train_steps, repeats, threads)`` for every setup in ``args.configs``, each in a
    fresh process on CPU (options from :func:`make_parser` and :func:`add_setup_arguments`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = [(name, args.device, args.bf16, args.train_steps, args.repeats, torch.get_num_threads())
            for name in args.configs]
    return run_each(run_setup, jobs, fresh_process=args.device == "cpu")


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, or the machine type where that is not available."""
    try:
        with open("/proc/cpuinfo") as file:
            return next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def describe_hardware(device: str, threads: bool = True) -> str:
    """The GPU's name on CUDA; on CPU its model, logical CPUs, torch threads (when ``threads``) and load average."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    torch_threads = f", torch threads: {torch.get_num_threads()}" if threads else ""
    load = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs{torch_threads}, load average {load}"


def command_line() -> str:
    """The command that ran this benchmark, as typed from the repository root."""
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def report_header(title: str, device: str, bf16: bool, precision: str | None = None) -> str:
    """``<title> on <device> (<hardware>), <precision>, torch <version>; `<command>```: a report's first line.

    The precision is ``"bf16 autocast"`` or ``"fp32"`` after ``bf16``, unless ``precision`` describes it."""
    precision = precision or ("bf16 autocast" if bf16 else "fp32")
    return (f"{title} on {device} ({describe_hardware(device)}), {precision}, torch {torch.__version__}; "
            f"`{command_line()}`")


def write_report(path: Path | None, text: str) -> None:
    """Write ``text`` to ``path`` (creating its folder); nothing when ``path`` is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
