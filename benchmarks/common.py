"""What every benchmark script shares: the timing method, memory in fresh processes, options, and the report's stamp.

The timing method (:func:`time_alternating`): every variant is first called ``warmup`` times untimed; then come
rounds in which every variant takes one *sample*, in the given order in even rounds and in reverse order in odd ones
(A B C, C B A, A B C, ...), until each variant has ``samples`` samples. A sample calls the variant repeatedly until at
least ``sample_seconds`` have passed and records the seconds per call. Taking turns exposes every variant to the same
background load on a shared machine; many samples of a fixed minimum length let the median ignore the disturbed ones,
and their spread (min-max, interquartile range) says how far a second run may land. A ratio between two variants is
the ratio of their medians; its range is the range of the per-round ratios (the two samples of one round ran back to
back, under the same load).

A script's timing as a whole runs in several fresh processes, one after another (:func:`time_in_processes`), each
taking its share of the rounds, and the samples of all of them are pooled: one process's samples, taken within a
minute, cannot show what differs between processes (where the allocator places the tensors) or between minutes (the
host's other tenants on a virtual machine's shared caches), and a second run of the script differs by both.

Memory (:func:`run_alternating`): each measurement runs in a fresh spawned process, so that its peak is its own, and
the variants take turns there too.

The scripts import this module as ``common`` (Python puts a script's own folder first on ``sys.path``), so each one
still runs as ``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import multiprocessing
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Defaults for a shared 2-core VM: nine samples (an odd count, so that the median is a measured sample) of at least
# one second each, after two untimed calls of every variant, the rounds split over three fresh processes run one
# after another. How far a second run lands is recorded in benchmarks/results/reproducibility.md.
SAMPLES = 9
SAMPLE_SECONDS = 1.0
WARMUP = 2
PROCESSES = 3
MEMORY_ROUNDS = 3

# Dense (no sparsity) peak TFLOP/s from the data sheets, (bf16, fp32 without TF32), for the MFU columns.
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5)}

# --tiny: a smoke run that only checks that a script works; its figures mean nothing.
TINY_SAMPLES = 3
TINY_SAMPLE_SECONDS = 0.0
TINY_WARMUP = 1
TINY_PROCESSES = 2
TINY_MEMORY_ROUNDS = 1


# ---------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Spread:
    """The median of some measurements with their range (min-max) and interquartile range (q1-q3)."""

    median: float
    low: float
    high: float
    q1: float
    q3: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        values = sorted(values)
        if not values:
            raise ValueError("a spread needs at least one value")
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
        return cls(statistics.median(values), values[0], values[-1], q1, q3)

    def format(self, digits: int = 3, suffix: str = "") -> str:
        """``median (low-high)`` to ``digits`` significant digits, e.g. ``1.07x (0.98-1.15x)``."""
        def number(value: float) -> str:
            return f"{value:,.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
        return f"{number(self.median)}{suffix} ({number(self.low)}-{number(self.high)}{suffix})"


@dataclass(frozen=True)
class Timing:
    """The samples of one variant: seconds per call, in round order, and the calls each sample averaged over."""

    seconds: tuple[float, ...]
    calls: tuple[int, ...]

    @property
    def spread(self) -> Spread:
        """Seconds per call."""
        return Spread.of(self.seconds)

    def rate(self, items: float = 1.0) -> Spread:
        """``items`` per second (steps/s, images/s, ...), one value per sample."""
        return Spread.of([items / s for s in self.seconds])


@dataclass(frozen=True)
class Timings:
    """What :func:`time_alternating` measured: every variant's :class:`Timing` and the order the samples were taken."""

    variants: dict[str, Timing]
    order: tuple[str, ...]

    def __getitem__(self, name: str) -> Timing:
        return self.variants[name]

    def speedup(self, name: str, baseline: str) -> Spread:
        """How many times faster ``name`` runs than ``baseline``: the ratio of their median times, with the range
        and interquartile range of the ratios of the samples taken in the same round."""
        mine, theirs = self.variants[name].seconds, self.variants[baseline].seconds
        per_round = Spread.of([b / a for a, b in zip(mine, theirs, strict=True)])
        ratio = statistics.median(theirs) / statistics.median(mine)
        return Spread(ratio, per_round.low, per_round.high, per_round.q1, per_round.q3)


# ---------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device | None) -> None:
    """Wait for the device's queued work, so that a clock read afterwards covers it."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def take_sample(fn: Callable[[], Any], sample_seconds: float, device: torch.device | None = None,
                clock: Callable[[], float] = time.perf_counter, self_timed: bool = False) -> tuple[float, int]:
    """Call ``fn`` until at least ``sample_seconds`` have passed (at least once): (seconds per call, calls).

    With ``self_timed``, ``fn`` returns the seconds it measured itself, and those are counted instead of the clock's:
    for a variant that times only part of its work (the trainer's step timer leaves out its checkpoints)."""
    synchronize(device)
    start = clock()
    calls, timed = 0, 0.0
    while True:
        spent = fn()
        calls += 1
        synchronize(device)
        if self_timed:
            timed += spent
        else:
            timed = clock() - start
        if timed >= sample_seconds:
            return timed / calls, calls


def time_alternating(variants: Mapping[str, Callable[[], Any]], *, samples: int = SAMPLES,
                     sample_seconds: float = SAMPLE_SECONDS, warmup: int = WARMUP, device: torch.device | None = None,
                     clock: Callable[[], float] = time.perf_counter, self_timed: bool = False) -> Timings:
    """Time ``variants`` (name -> function of no arguments) taking turns, as the module docstring describes:
    ``warmup`` untimed calls of each, then ``samples`` rounds of one sample of at least ``sample_seconds`` per variant,
    in reverse order every other round. ``self_timed``: see :func:`take_sample`."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    synchronize(device)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    calls: dict[str, list[int]] = {name: [] for name in names}
    order = []
    for round_ in range(samples):
        for name in names if round_ % 2 == 0 else names[::-1]:
            per_call, count = take_sample(variants[name], sample_seconds, device, clock, self_timed)
            seconds[name].append(per_call)
            calls[name].append(count)
            order.append(name)
    return Timings({name: Timing(tuple(seconds[name]), tuple(calls[name])) for name in names}, tuple(order))


CLOCK_DESCRIPTIONS = {"wall": "wall-clock time", "thread": "the timing thread's CPU time"}
"""How a report names each ``--clock``."""


def clock_for(name: str) -> Callable[[], float]:
    """``"wall"``: ``time.perf_counter``; ``"thread"``: the calling thread's CPU time, which other processes cannot
    inflate but which misses work done by other threads (use it only with one torch thread and no loader workers)."""
    return {"wall": time.perf_counter, "thread": time.thread_time}[name]


# ---------------------------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """The rise of peak memory (MiB, in ``.mib``) inside a ``with`` block.

    On CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated on entry. On CPU, the process's peak
    resident set (Linux ``VmHWM``) above the resident set on entry, after resetting the peak to the current resident
    set (``/proc/self/clear_refs``) once freed memory went back to the system (``malloc_trim``). Where that reset is
    not possible, the peak cannot go down: run each measurement in a fresh process (:func:`run_alternating`).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = 0.0

    @staticmethod
    def kind(device: str) -> str:
        """What ``.mib`` is on ``device``, for a table's column title."""
        return "peak allocated" if device.startswith("cuda") else "peak RSS rise"

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self._base = _status_kib("VmRSS") / 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._base
        else:
            self.mib = _status_kib("VmHWM") / 1024 - self._base


def run_alternating(fn: Callable[..., T], jobs: Mapping[str, tuple], rounds: int = MEMORY_ROUNDS,
                    fresh_process: bool = True) -> dict[str, list[T]]:
    """``fn(*jobs[name])`` for every job, ``rounds`` times, the jobs in the given order in even rounds and reversed in
    odd ones; with ``fresh_process`` each call in its own spawned process (:func:`call_in_fresh_process`), so that its
    peak memory is its own. Returns each job's results."""
    names = list(jobs)
    results: dict[str, list[T]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            results[name].append(call_in_fresh_process(fn, *jobs[name]) if fresh_process else fn(*jobs[name]))
    return results


# ---------------------------------------------------------------------------------------------- processes


def _call_and_send(connection: Any, fn: Callable[..., Any], args: tuple) -> None:
    # A spawned process would start its own processes (a data loader's workers) by spawning too, each a new interpreter
    # that imports everything again; as a script run from the shell, it starts them the platform's default way.
    multiprocessing.set_start_method(None, force=True)
    try:
        connection.send(("result", fn(*args)))
    except BaseException:
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def call_in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a newly spawned Python process, which ends with the call; its result comes back.

    ``fn`` must be a module-level function, its arguments and result picklable. The process is not a daemon, so
    ``fn`` may start processes of its own (a data loader's workers).

    Raises:
        RuntimeError: ``fn`` raised (the message holds the child's traceback) or the process died.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_call_and_send, args=(sender, fn, args))
    process.start()
    sender.close()
    try:
        kind, payload = receiver.recv()
    except EOFError:
        kind, payload = "error", "the process ended without a result"
    finally:
        process.join()
        receiver.close()
    if kind == "error":
        raise RuntimeError(f"{getattr(fn, '__qualname__', fn)} failed in a fresh process (exit code "
                           f"{process.exitcode}):\n{payload}")
    return payload


def split_rounds(samples: int, processes: int) -> list[int]:
    """``samples`` rounds shared out over ``processes`` as evenly as possible, the larger shares first."""
    if not 1 <= processes <= samples:
        raise ValueError(f"need 1 <= processes <= samples, got {processes} processes for {samples} samples")
    return [samples // processes + (index < samples % processes) for index in range(processes)]


def merge_processes(results: Sequence[Any]) -> Any:
    """Pool what :func:`time_in_processes`' processes returned: every :class:`Timings` gets the samples of all of
    them in the order they were taken; dicts, lists and tuples are merged item by item; any other value (a parameter
    count, a sample's error) is the first process's.

    Raises:
        TypeError: a :class:`Spread` is among the results: a spread must be taken of the pooled samples, after this.
    """
    first = results[0]
    if isinstance(first, Spread):
        raise TypeError("a process returned a Spread; return the Timings and take the spread after merging")
    if isinstance(first, Timings):
        variants = {name: Timing(tuple(s for r in results for s in r[name].seconds),
                                 tuple(c for r in results for c in r[name].calls)) for name in first.variants}
        return Timings(variants, tuple(name for r in results for name in r.order))
    if isinstance(first, dict):
        return {key: merge_processes([r[key] for r in results]) for key in first}
    if isinstance(first, (list, tuple)):
        items = [merge_processes(column) for column in zip(*results, strict=True)]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    return first


def run_with_threads(fn: Callable[[argparse.Namespace], T], args: argparse.Namespace) -> T:
    """``fn(args)`` with ``args.threads`` torch threads (where the script has that option): what a fresh process runs
    (``call_in_fresh_process(run_with_threads, fn, args)``), which does not inherit the setting."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return fn(args)


def time_in_processes(measure: Callable[[argparse.Namespace], T], args: argparse.Namespace) -> T:
    """A script's timing, ``measure(args)``, run in ``args.processes`` fresh processes one after another.

    Each process gets its share of the ``args.samples`` rounds (:func:`split_rounds`; the warm-up calls in every one)
    and the results are pooled by :func:`merge_processes`, so every median and range spans the whole run. ``measure``
    must be a module-level function that builds its variants, times them with :func:`time_variants` and returns the
    :class:`Timings` (and anything else picklable); spreads and ratios are taken of the pooled result. With one
    process, ``measure(args)`` runs in this one.
    """
    if args.processes == 1:
        return measure(args)
    shares = [argparse.Namespace(**{**vars(args), "samples": share, "processes": 1})
              for share in split_rounds(args.samples, args.processes)]
    return merge_processes([call_in_fresh_process(run_with_threads, measure, share) for share in shares])


# ---------------------------------------------------------------------------------------------- options


def make_parser(description: str, *, output_help: str = "Markdown file for the report",
                bf16_help: str | None = None, threads: int | None = 1,
                threads_option: bool = True, peak_tflops: bool = False, fp32_only: bool = False,
                memory: bool = True, processes: bool = True) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has: ``--device``, ``--threads`` (default ``threads``; left out
    without ``threads_option``, for a script whose variants are thread counts), ``--output``, ``--note``, the timing
    options of :func:`time_alternating`, ``--processes`` of :func:`time_in_processes` (left out without
    ``processes``, for a script that does not time with them), ``--memory-rounds`` (left out without ``memory``, for a
    script that measures no memory), ``--clock``, ``--tiny``, where ``bf16_help`` is given, ``--bf16``, and with
    ``peak_tflops``, ``--peak-tflops`` (see :func:`peak_flops`), and with ``fp32_only``, ``--fp32-only`` (see
    :func:`without_bf16`)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    if threads_option:
        parser.add_argument("--threads", type=int, default=threads,
                            help="torch threads on CPU, the same for every variant (default: %(default)s)")
    if bf16_help is not None:
        parser.add_argument("--bf16", action="store_true", help=bf16_help)
    if peak_tflops:
        parser.add_argument("--peak-tflops", type=float, default=None,
                            help="the device's peak TFLOP/s for the MFU columns (default: the data sheets of the GPUs "
                                 "in PEAK_TFLOPS; without either, no MFU)")
    if fp32_only:
        parser.add_argument("--fp32-only", action="store_true",
                            help="with --official-root: leave out nf's bf16 rows (on a CPU without native bf16 they "
                                 "measure oneDNN's emulation, many times slower than fp32)")
    timing = parser.add_argument_group("timing (see benchmarks/README.md)")
    timing.add_argument("--samples", type=int, default=SAMPLES,
                        help="timed samples per variant, taken in alternating rounds (default: %(default)s)")
    timing.add_argument("--sample-seconds", type=float, default=SAMPLE_SECONDS,
                        help="a sample repeats its call until this many seconds have passed (default: %(default)s)")
    timing.add_argument("--warmup", type=int, default=WARMUP,
                        help="untimed calls of every variant first, in every process (default: %(default)s)")
    if processes:
        timing.add_argument("--processes", type=int, default=PROCESSES,
                            help="fresh processes, one after another, that share the rounds out; their samples are "
                                 "pooled (default: %(default)s)")
    if memory:
        timing.add_argument("--memory-rounds", type=int, default=MEMORY_ROUNDS,
                            help="fresh processes per variant for the peak memory, in alternating order "
                                 "(default: %(default)s)")
    timing.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="wall: elapsed time; thread: the timing thread's CPU time, which other processes cannot "
                             "inflate (only with --threads 1) (default: %(default)s)")
    timing.add_argument("--tiny", action="store_true",
                        help=f"smoke run: tiny models, {TINY_SAMPLES} samples of one call in {TINY_PROCESSES} "
                             f"processes, {TINY_MEMORY_ROUNDS} memory round; checks that the script works, its figures "
                             f"mean nothing (refuses an --output under benchmarks/results)")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE", help=output_help)
    parser.add_argument("--note", default="",
                        help="a sentence for the report's header, e.g. what else ran on the machine")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line and check it: a CUDA device must exist, ``--clock thread`` needs one thread, and a
    ``--tiny`` run may not write under ``benchmarks/results``. ``--tiny`` replaces the timing options with its own;
    ``--threads`` is applied.

    bf16 autocast is accepted on CPU too; it pays off there only on CPUs with native bf16 arithmetic (AVX512-BF16 or
    AMX), elsewhere oneDNN emulates it and it is slower than fp32.
    """
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.clock == "thread" and getattr(args, "threads", None) != 1:
        parser.error("--clock thread measures one thread's CPU time: it needs --threads 1")
    if args.tiny:
        if args.output is not None and RESULTS in args.output.resolve().parents:
            parser.error(f"--tiny figures mean nothing: write them elsewhere than {args.output}")
        args.samples, args.sample_seconds, args.warmup = TINY_SAMPLES, TINY_SAMPLE_SECONDS, TINY_WARMUP
        if "memory_rounds" in args:
            args.memory_rounds = TINY_MEMORY_ROUNDS
        if "processes" in args:
            args.processes = TINY_PROCESSES
    if args.samples < 1 or getattr(args, "memory_rounds", 1) < 1 or args.warmup < 0 or args.sample_seconds < 0:
        parser.error("--samples and --memory-rounds must be at least 1, --warmup and --sample-seconds at least 0")
    if not 1 <= getattr(args, "processes", 1) <= args.samples:
        parser.error(f"--processes must be between 1 and --samples ({args.samples}): each process takes at least one "
                     "round")
    if "threads" in args:
        if args.threads:
            torch.set_num_threads(args.threads)
        args.threads = torch.get_num_threads()
    return args


def time_variants(variants: Mapping[str, Callable[[], Any]], args: argparse.Namespace,
                  device: torch.device | None = None, self_timed: bool = False) -> Timings:
    """:func:`time_alternating` with the timing options of the command line."""
    return time_alternating(variants, samples=args.samples, sample_seconds=args.sample_seconds, warmup=args.warmup,
                            device=device, clock=clock_for(args.clock), self_timed=self_timed)


def peak_flops(device: str, bf16: bool, peak_tflops: float | None) -> float | None:
    """The accelerator's dense peak FLOP/s for the precision used: ``--peak-tflops``, else the data sheet's for the
    GPUs named in ``PEAK_TFLOPS``; ``None`` (no MFU column) otherwise."""
    if peak_tflops is not None:
        return peak_tflops * 1e12
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    for model, (bf16_peak, fp32_peak) in PEAK_TFLOPS.items():
        if model in name:
            return (bf16_peak if bf16 else fp32_peak) * 1e12
    return None


def mfu(flops: float, seconds: float, peak: float | None) -> str:
    """Model FLOPs utilisation as a table cell: ``flops`` done in ``seconds`` over the ``peak`` FLOP/s (``-`` without
    a peak)."""
    return f"{100 * flops / seconds / peak:.2g}%" if peak else "-"


def without_bf16(variants: dict[str, tuple], fp32_only: bool) -> dict[str, tuple]:
    """``variants`` (by name, each a tuple whose last item is its bf16 autocast flag), less the bf16 ones with
    ``fp32_only`` (``--fp32-only``)."""
    return {name: value for name, value in variants.items() if not (fp32_only and value[-1])}


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on ``device`` when ``bf16`` is set, a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ---------------------------------------------------------------------------------------------- the report


# The CPU flags of native bf16 arithmetic (x86's AVX512-BF16 and AMX, Arm's FEAT_BF16): where a CPU has none, bf16
# autocast runs emulated and far slower.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# What tells apart CPUs of one model name in /proc/cpuinfo, on x86 and on Arm.
CPU_IDENTITY_FIELDS = ("cpu family", "model", "stepping", "CPU implementer", "CPU part", "CPU variant", "CPU revision")


def describe_cpu(cpuinfo: str, capability: str) -> str:
    """A CPU as a report names it, from the text of ``/proc/cpuinfo`` and PyTorch's kernel level ``capability``.

    The model name alone does not tell CPUs apart: virtual machines often show only the vendor's line ("AMD EPYC"),
    shared by generations that differ in speed and in what they compute natively. So the family, model and stepping
    (on Arm the implementer, part, variant and revision) follow it where ``cpuinfo`` gives them, then the instruction
    set PyTorch's CPU kernels dispatch to (``AVX2``, ``AVX512``, ...) and whether bf16 arithmetic is native
    (:data:`NATIVE_BF16_FLAGS`) or emulated.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block describes them all
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    details = [", ".join(f"{key} {fields[key]}" for key in CPU_IDENTITY_FIELDS if key in fields),
               f"PyTorch kernels: {capability}"]
    flags = fields.get("flags", fields.get("Features"))  # x86, Arm
    if flags is not None:
        native = [flag for flag in NATIVE_BF16_FLAGS if flag in flags.split()]
        details.append("bf16 arithmetic: " + (f"native ({', '.join(native)})" if native else "emulated"))
    return f"{name} ({'; '.join(detail for detail in details if detail)})"


def cpu_description() -> str:
    """This machine's CPU as :func:`describe_cpu` names it."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return describe_cpu(cpuinfo, torch.backends.cpu.get_cpu_capability())


def commit() -> str:
    """The checked-out commit, with ``+changes`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        head = git("rev-parse", "--short=10", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if dirty else "")


def command_line() -> str:
    """The command that ran this benchmark, as typed from the repository root."""
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def load_average() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


class Stamp:
    """The lines that open a report: what ran, where, when and how it was timed. Create it before measuring (it
    records the start's date and load average) and call :meth:`render` after. ``timing`` describes the method of a
    script that does not time with :func:`time_variants`."""

    def __init__(self, title: str, args: argparse.Namespace, precision: str | None = None,
                 timing: str | None = None) -> None:
        self.title, self.args, self.timing = title, args, timing
        self.precision = precision or ("bf16 autocast" if getattr(args, "bf16", False) else "fp32")
        self.start = datetime.datetime.now(datetime.timezone.utc)
        self.start_load = load_average()
        self.command = command_line()

    def render(self, extra: Sequence[str] = (), threads: str | None = None) -> str:
        """The title, then one bullet per fact, then ``extra`` bullets (versions of other libraries, ...).
        ``threads`` describes the torch threads where they are not ``--threads``."""
        a = self.args
        if a.device.startswith("cuda"):
            hardware = f"{torch.cuda.get_device_name(a.device)} ({a.device})"
        else:
            hardware = f"{cpu_description()}, {os.cpu_count()} logical CPUs, torch threads: {threads or a.threads}"
        clock = CLOCK_DESCRIPTIONS[a.clock]
        memory = (f"; peak memory: median of {a.memory_rounds} fresh process(es) per variant, in alternating order"
                  if "memory_rounds" in a else "")
        processes = (f", in {a.processes} fresh processes one after another "
                     f"({' + '.join(map(str, split_rounds(a.samples, a.processes)))} rounds), the samples pooled"
                     if getattr(a, "processes", 1) > 1 else "")
        facts = [
            f"command: `{self.command}`",
            f"commit {commit()}; date {self.start:%Y-%m-%d %H:%M} UTC; torch {torch.__version__}, "
            f"python {platform.python_version()}",
            f"hardware: {hardware}; load average {self.start_load} at the start, {load_average()} at the end",
            f"precision: {self.precision}",
            "timing: " + (self.timing or
                          f"{a.warmup} warm-up calls per variant, then {a.samples} alternating rounds of one sample "
                          f"per variant, each sample at least {a.sample_seconds:g} s of repeated calls ({clock})"
                          f"{processes}; "
                          f"median (min-max over the samples); ratios: ratio of medians (min-max of the per-round "
                          f"ratios){memory}"),
        ]
        if a.tiny:
            facts.append("**--tiny smoke run: these figures mean nothing**")
        if a.note:
            facts.append(f"note: {a.note}")
        facts.extend(extra)
        return f"# {self.title}\n\n" + "\n".join(f"- {fact}" for fact in facts) + "\n"


def write_report(path: Path | None, text: str) -> None:
    """Print ``text`` and write it to ``path`` (creating its folder) when ``path`` is given."""
    print(text, flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
