"""Speed of nf's Glow and MAF against normflows' Glow and zuko's MAF at equal configurations, in one process.

For every case it measures, for each implementation:

* training steps/s: ``-log_prob(x).mean()``, backward and an Adam step on a batch (timed by the thread's CPU time when
  running on one CPU thread, see :func:`clock`; by the wall clock otherwise);
* sampling samples/s: drawing a batch of samples in eval mode without gradients;
* peak memory: on CPU the rise of the process's peak resident set size during the phase (Linux ``VmHWM``, reset
  through ``/proc/self/clear_refs`` after ``malloc_trim``); on CUDA ``torch.cuda.max_memory_allocated``.

Implementations alternate within every repeat (in reverse order every other repeat) and the best repeat is reported,
which keeps the comparison fair on a shared machine. The configurations are equal: the same levels, steps and widths
for Glow (normflows' ``GlowBlock`` with ``net_actnorm=True`` is openai/glow's coupling network; nf's Glow runs with
``edge_bias=False`` here because normflows has no edge bias); the same MADE sizes, number of layers, ReLU and reversed
orders for MAF (nf's MAF without batch norm, as zuko has none; the row ``nf (+BN)`` is the paper's setting).

    python benchmarks/glow_maf.py                       # full table (a few minutes on 2 CPU cores)
    python benchmarks/glow_maf.py --quick               # smoke run
    python benchmarks/glow_maf.py --out benchmarks/results/glow_maf_cpu.md
"""

from __future__ import annotations

import ctypes
import gc
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import common
import torch
from torch import Tensor, nn

from nfkit_core.plugins import DataInfo
from nfkit_glow_maf import GlowConfig, MAFConfig, build_glow, build_maf


@dataclass
class Case:
    """One model size: ``make`` builds each implementation, returning (module, loss(x), sample(n))."""

    model: str
    size: str
    batch: int
    num_samples: int
    data: Callable[[int], Tensor]
    implementations: dict[str, Callable[[], tuple[nn.Module, Callable, Callable]]]


# ---------------------------------------------------------------------------------------------- implementations


def nf_maf(features: int, hidden: int, layers: int, batch_norm: bool):
    def make():
        flow = build_maf(MAFConfig(num_layers=layers, hidden_features=hidden, hidden_layers=2, batch_norm=batch_norm),
                         DataInfo((features,)))
        return flow, lambda x: -flow.log_prob(x).mean(), lambda n: flow.sample(n)
    return make


def zuko_maf(features: int, hidden: int, layers: int):
    def make():
        import zuko

        flow = zuko.flows.MAF(features, 0, transforms=layers, hidden_features=(hidden, hidden))
        return flow, lambda x: -flow().log_prob(x).mean(), lambda n: flow().sample((n,))
    return make


def nf_glow(shape: tuple[int, int, int], levels: int, steps: int, width: int):
    def make():
        config = GlowConfig(num_levels=levels, steps_per_level=steps, hidden_channels=width, edge_bias=False)
        flow = build_glow(config, DataInfo(shape))
        return flow, lambda x: -flow.log_prob(x).mean(), lambda n: flow.sample(n)
    return make


def normflows_glow(shape: tuple[int, int, int], levels: int, steps: int, width: int):
    """normflows' multi-scale Glow as in its README / examples/glow.ipynb."""
    def make():
        import normflows as nfl

        channels, height, width_ = shape
        q0, merges, flows = [], [], []
        for i in range(levels):
            level = [nfl.flows.GlowBlock(channels * 2 ** (levels + 1 - i), width, split_mode="channel", scale=True,
                                         net_actnorm=True) for _ in range(steps)]
            flows.append(level + [nfl.flows.Squeeze()])
            if i > 0:
                merges.append(nfl.flows.Merge())
                latent = (channels * 2 ** (levels - i), height // 2 ** (levels - i), width_ // 2 ** (levels - i))
            else:
                latent = (channels * 2 ** (levels + 1), height // 2 ** levels, width_ // 2 ** levels)
            q0.append(nfl.distributions.GlowBase(latent))
        model = nfl.MultiscaleFlow(q0, flows, merges, class_cond=False)
        return model, lambda x: model.forward_kld(x), lambda n: model.sample(n)[0]
    return make


def cases(quick: bool) -> list[Case]:
    def gaussian(features):
        return lambda n: torch.randn(n, features)

    def images(shape):
        return lambda n: torch.rand(n, *shape) * 2 - 1

    small_maf = dict(features=8, hidden=100, layers=5)
    large_maf = dict(features=64, hidden=512, layers=5)
    small_glow = dict(shape=(3, 16, 16), levels=2, steps=8, width=128)
    large_glow = dict(shape=(3, 32, 32), levels=3, steps=16, width=256)
    if quick:
        large_maf = dict(features=16, hidden=128, layers=3)
        large_glow = dict(shape=(3, 16, 16), levels=2, steps=4, width=64)
    result = []
    for size, spec, batch, samples in (("small", small_maf, 512, 1000), ("large", large_maf, 256, 256)):
        label = f"{size}: D={spec['features']}, {spec['layers']} MADEs of 2x{spec['hidden']}"
        result.append(Case("MAF", label, batch, samples, gaussian(spec["features"]), {
            "nf": nf_maf(**spec, batch_norm=False),
            "zuko": zuko_maf(**spec),
            "nf (+BN)": nf_maf(**spec, batch_norm=True),
        }))
    for size, spec, batch in (("small", small_glow, 32), ("large", large_glow, 16)):
        label = (f"{size}: {'x'.join(map(str, spec['shape']))}, L={spec['levels']}, K={spec['steps']}, "
                 f"width {spec['width']}")
        result.append(Case("Glow", label, batch, batch, images(spec["shape"]), {
            "nf": nf_glow(**spec),
            "normflows": normflows_glow(**spec),
        }))
    return result


# ---------------------------------------------------------------------------------------------- measurement


class PhasePeakMemory:
    """The rise of peak memory (MiB) inside a ``with`` block; ``None`` where it cannot be measured.

    Unlike :class:`common.PeakMemory` it resets the peak on entry, so that one process can measure many phases.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None

    @staticmethod
    def _status_kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def __enter__(self) -> PhasePeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set size to the current one
            self.base = self._status_kib("VmRSS")
        except (OSError, KeyError):
            self.base = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.base) / 2 ** 20
        elif self.base is not None:
            self.mib = (self._status_kib("VmHWM") - self.base) / 1024


def clock(device: torch.device) -> Callable[[], float]:
    """The clock to time with: on one CPU thread that thread's CPU time, which other processes on a shared machine
    cannot inflate (on an idle machine it equals the wall time); otherwise the wall time."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def time_per_call(fn: Callable[[], None], device: torch.device, min_time: float, min_calls: int) -> float:
    """Seconds per call, averaged over at least ``min_calls`` calls and ``min_time`` seconds."""
    now = clock(device)
    calls, start = 0, now()
    while calls < min_calls or now() - start < min_time:
        fn()
        calls += 1
    common.synchronize(device)
    return (now() - start) / calls


@dataclass
class Result:
    params: int
    train_steps_per_s: float = 0.0
    samples_per_s: float = 0.0
    train_mib: float | None = None
    sample_mib: float | None = None


def measure(case: Case, name: str, device: torch.device, min_time: float, result: Result | None) -> Result:
    torch.manual_seed(0)
    module, loss_fn, sample_fn = case.implementations[name]()
    module.to(device)
    x = case.data(case.batch).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

    def train_step() -> None:
        loss = loss_fn(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    module.train()
    train_step()  # data-dependent initialisations and warm-up
    first = result is None
    result = result or Result(sum(p.numel() for p in module.parameters()))
    with PhasePeakMemory(device) as memory:
        seconds = time_per_call(train_step, device, min_time, 3)
    result.train_steps_per_s = max(result.train_steps_per_s, 1 / seconds)
    if first:
        result.train_mib = memory.mib

    module.eval()
    with torch.no_grad():
        sample_fn(case.num_samples)  # warm-up
        with PhasePeakMemory(device) as memory:
            seconds = time_per_call(lambda: sample_fn(case.num_samples), device, min_time, 2)
    result.samples_per_s = max(result.samples_per_s, case.num_samples / seconds)
    if first:
        result.sample_mib = memory.mib
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = common.make_parser(__doc__, output_flag="--out", output_help="also write the table to this markdown file")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads on CPU (1 keeps a shared machine from skewing the comparison)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats; the best is reported")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per timed phase")
    parser.add_argument("--quick", action="store_true", help="smaller models and one short repeat")
    args = common.parse_args(parser)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.min_time = 1, 0.3

    header = ("| model | size | implementation | params | batch | train steps/s | samples/s | "
              "peak MiB (train) | peak MiB (sampling) | speed-up train / sampling |")
    lines = [header, "|" + "---|" * 10]
    for case in cases(args.quick):
        results: dict[str, Result] = {}
        for repeat in range(args.repeats):
            names = list(case.implementations)
            for name in names[::-1] if repeat % 2 else names:
                results[name] = measure(case, name, device, args.min_time, results.get(name))
        reference = results[[n for n in case.implementations if not n.startswith("nf")][0]]
        for name, r in results.items():
            speedup = (f"{r.train_steps_per_s / reference.train_steps_per_s:.2f}x / "
                       f"{r.samples_per_s / reference.samples_per_s:.2f}x")
            lines.append(f"| {case.model} | {case.size} | {name} | {r.params:,} | {case.batch} | "
                         f"{fmt(r.train_steps_per_s, 2)} | {fmt(r.samples_per_s, 0)} | {fmt(r.train_mib)} | "
                         f"{fmt(r.sample_mib)} | {speedup} |")
            print(lines[-1], flush=True)

    import normflows
    import zuko

    timing = "thread CPU time" if clock(device) is time.thread_time else "wall time"
    environment = (f"device {device} ({common.describe_hardware(args.device)}), {timing}, "
                   f"torch {torch.__version__}, zuko {zuko.__version__}, normflows {normflows.__version__}, "
                   f"python {platform.python_version()}; best of {args.repeats} alternating "
                   f"repeats of >= {args.min_time:g} s; speed-up is relative to the other library's row")
    table = "\n".join(lines)
    print("\n" + table + "\n\n" + environment)
    common.write_report(args.output, f"# Glow and MAF speed\n\n`{common.command_line()}`\n\n{table}\n\n{environment}\n")


if __name__ == "__main__":
    main()
