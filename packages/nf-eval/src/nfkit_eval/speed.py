"""Speed and size, in the style of Table 2 of "Distilling Normalizing Flows".

* parameters;
* single-batch sampling latency: ``speed_batch`` samples per call, one warm-up call, then ``speed_repeats`` timed
  calls; mean ± sd in milliseconds;
* sampling throughput: images (or rows) per second at ``speed_large_batch``;
* likelihood throughput: examples per second of the single-sample bound at ``speed_large_batch``;
* peak memory of sampling at ``speed_large_batch``: the CUDA allocator's peak on a GPU; on a CPU the growth of the
  peak resident set size in a fresh process (``python -m nfkit_eval.speed``), which loads the pickled flow, draws one
  small warm-up batch, resets the kernel's peak-RSS mark, and then draws the large one (Linux only).

Every timing synchronizes CUDA before reading the clock; device and dtype are part of each protocol.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nfkit_eval.context import EvalContext
from nfkit_eval.data import DiscreteLikelihood
from nfkit_eval.report import Measurement

__all__ = ["measure_speed", "timed"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call, device: torch.device, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``call()``, after one warm-up call.

    Args:
        call: the work to time, called without arguments.
        device: where ``call`` runs; CUDA is synchronised before and after each call so that the time is the GPU's.
        repeats: the number of timed calls.

    Returns:
        the wall-clock seconds of each timed call.
    """
    call()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _peak_cpu_rss_growth(flow: torch.nn.Module, n: int, context_classes: int) -> tuple[float | None, str]:
    """Peak RSS growth (MiB) of sampling ``n`` in a fresh process, or ``None`` and the reason."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flow.pt"
        try:
            torch.save(flow.cpu(), path)
        except Exception as error:  # a flow holding unpicklable members (lambdas) cannot travel
            return None, f"the flow cannot be pickled into a fresh process ({type(error).__name__}: {error})"
        done = subprocess.run([sys.executable, "-m", "nfkit_eval.speed", str(path), str(n), str(context_classes)],
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None, f"the measuring process failed: {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_growth_mib"], ""


def measure_speed(context: EvalContext) -> list[Measurement]:
    """The ``speed`` metric: parameters, sampling latency and throughput, likelihood throughput, peak memory.

    Latency is the mean over ``options.speed_repeats`` batches of ``options.speed_batch`` samples (ms, with the sd
    over batches); the throughputs take the best of up to 3 batches of ``options.speed_large_batch`` (samples/s,
    examples/s); the peak memory of sampling such a batch is the CUDA allocator's peak on a GPU, else the growth of
    the peak resident set size in a fresh process (MiB; ``None`` with a reason when the flow cannot be pickled).

    Args:
        context: the evaluation in progress (its flow, data and options).

    Returns:
        the five measurements, in that order.
    """
    o, flow, device = context.options, context.flow, context.device
    dtype = str(next(flow.parameters()).dtype).replace("torch.", "")
    base = {"device": str(device), "dtype": dtype, "threads": torch.get_num_threads(), "seed": o.seed,
            "temperature": o.temperature}
    generator = torch.Generator(device=device).manual_seed(o.seed)

    def sample(n: int):
        return lambda: flow.sample(n, context.sample_context(n), temperature=o.temperature, generator=generator)

    with context.progress(4, "speed") as update:
        latency = [1000 * t for t in timed(sample(o.speed_batch), device, o.speed_repeats)]
        update(1)
        large_repeats = max(1, min(3, o.speed_repeats))
        sampling = timed(sample(o.speed_large_batch), device, large_repeats)
        update(1)
        x, cond = context.reference_batch(o.speed_large_batch)
        model = DiscreteLikelihood(flow, context.data.preprocessing)
        with torch.no_grad():
            likelihood = timed(lambda: model.log_prob(x, cond), device, large_repeats)
        update(1)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            sample(o.speed_large_batch)()
            peak, note = (torch.cuda.max_memory_allocated(device) - before) / 2**20, ""
            memory_protocol = "CUDA allocator peak above the memory held before the call"
        else:
            peak, note = _peak_cpu_rss_growth(flow, o.speed_large_batch, context.data.info.num_classes)
            flow.to(device)
            memory_protocol = "growth of the peak resident set size in a fresh process"
        update(1)
    parameters = sum(p.numel() for p in flow.parameters())
    results = [
        Measurement("parameters", float(parameters), None, "", {"counted": "every parameter of the flow"}),
        Measurement("sampling latency", statistics.mean(latency), statistics.stdev(latency) if len(latency) > 1
                    else None, "ms", {**base, "batch": o.speed_batch, "timed_batches": o.speed_repeats,
                                      "warmup_batches": 1, "stderr": "sd over batches"}),
        Measurement("sampling throughput", o.speed_large_batch / min(sampling), None, "samples/s",
                    {**base, "batch": o.speed_large_batch, "timed_batches": large_repeats, "reported": "best batch"},
                    lower_is_better=False),
        Measurement("likelihood throughput", o.speed_large_batch / min(likelihood), None, "examples/s",
                    {**base, "batch": o.speed_large_batch, "timed_batches": large_repeats, "reported": "best batch",
                     "bound": "single-sample"}, lower_is_better=False),
        Measurement("peak sampling memory", peak, None, "MiB", {**base, "batch": o.speed_large_batch,
                    "measured": memory_protocol}, reason=note or None),
    ]
    return results


def _resident_kib(field: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, in KiB, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _child(path: str, n: int, num_classes: int) -> None:
    """Fresh-process part of the CPU memory measurement: prints the peak RSS growth of sampling ``n``.

    Writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's peak-RSS mark (``VmHWM``) to the current RSS, so the
    peak afterwards is that of the sampling call alone.
    """
    flow = torch.load(path, weights_only=False).eval()  # our own temporary file, written by the parent
    context = (lambda k: torch.arange(k) % num_classes) if num_classes > 0 else (lambda k: None)
    with torch.no_grad():
        flow.sample(2, context(2))
        Path("/proc/self/clear_refs").write_text("5")
        before = _resident_kib("VmRSS")
        flow.sample(n, context(n))
        peak = _resident_kib("VmHWM")
    print(json.dumps({"peak_rss_growth_mib": (peak - before) / 1024}))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
