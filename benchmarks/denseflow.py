"""DenseFlow speed: training steps/s and peak memory, sampling images/s, and the K-sample likelihood evaluation.

For a small (digits, 1x8x8) and a CIFAR-sized (DenseFlow-74-10, 3x32x32) configuration this prints one Markdown
table (and writes it to ``--output``):

* training: AdamW steps per second on random integer images (variational dequantization included), and the peak
  memory of the step (CUDA: ``torch.cuda.max_memory_allocated``; CPU: growth of the process's peak resident set,
  measured in a fresh process per configuration);
* sampling: images per second of ``flow.sample`` in eval mode;
* evaluation: seconds per image of the importance-weighted estimate over ``K`` draws of all the noise
  (``DenseFlow.importance_weighted_log_prob``, ``sample_batch_size`` draws per forward pass).

Usage::

    python benchmarks/denseflow.py                   # CPU, fp32, prints the table
    python benchmarks/denseflow.py --output benchmarks/results/denseflow_cpu.md
    python benchmarks/denseflow.py --device cuda --bf16 --output benchmarks/results/denseflow_h100_bf16.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nf_core.plugins import DataInfo
from nf_denseflow import PRESETS, DenseFlowConfig, build_denseflow


@dataclass
class Setup:
    """One benchmarked model and the batch sizes used for it."""

    preset: str
    data: DataInfo
    train_batch: int
    sample_batch: int
    eval_images: int
    eval_samples: int
    eval_sample_batch: int


SETUPS = {
    "small": Setup("digits", DataInfo((1, 8, 8), num_bins=17), train_batch=64, sample_batch=64, eval_images=4,
                   eval_samples=32, eval_sample_batch=32),
    "cifar": Setup("denseflow-74-10", DataInfo((3, 32, 32), num_bins=256), train_batch=4, sample_batch=4,
                   eval_images=1, eval_samples=8, eval_sample_batch=4),
}

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def levels(setup: Setup, batch: int, device: torch.device) -> torch.Tensor:
    return torch.randint(0, setup.data.num_bins, (batch, *setup.data.shape), device=device).float()


def measure_training(flow, setup: Setup, device: torch.device, bf16: bool, steps: int) -> tuple[float, float]:
    """Steps per second and peak memory (MiB) of AdamW training steps."""
    optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4)
    x = levels(setup, setup.train_batch, device)
    flow.train()

    def step() -> None:
        with autocast(device, bf16):
            loss = flow.bits_per_dim(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = peak_rss_mib()
    step()  # warm-up (and ActNorm initialisation)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib() - rss_before
    flow.eval()
    return steps / elapsed, memory


def measure_sampling(flow, setup: Setup, device: torch.device, bf16: bool, repeats: int) -> float:
    """Images per second of ``flow.sample``."""
    generator = torch.Generator(device=device).manual_seed(0)
    with autocast(device, bf16):
        flow.sample(setup.sample_batch, generator=generator)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            flow.sample(setup.sample_batch, generator=generator)
        synchronize(device)
    return repeats * setup.sample_batch / (time.perf_counter() - start)


def measure_evaluation(flow, setup: Setup, device: torch.device, bf16: bool) -> float:
    """Seconds per image of the K-sample importance-weighted log-likelihood."""
    x = levels(setup, setup.eval_images, device)
    generator = torch.Generator(device=device).manual_seed(0)
    with autocast(device, bf16):
        flow.importance_weighted_log_prob(x, num_samples=setup.eval_sample_batch,
                                          sample_batch_size=setup.eval_sample_batch, noise=generator)
        synchronize(device)
        start = time.perf_counter()
        flow.importance_weighted_log_prob(x, num_samples=setup.eval_samples,
                                          sample_batch_size=setup.eval_sample_batch, noise=generator)
        synchronize(device)
    return (time.perf_counter() - start) / setup.eval_images


def run_setup(name: str, device_name: str, bf16: bool, train_steps: int, repeats: int, threads: int) -> dict:
    """Every measurement of one setup (run in its own process on CPU, so that its peak memory is its own)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    setup = SETUPS[name]
    torch.manual_seed(0)
    config = DenseFlowConfig(**PRESETS[setup.preset])
    flow = build_denseflow(config, setup.data).to(device)
    steps_per_s, memory = measure_training(flow, setup, device, bf16, train_steps)
    return dict(name=name, setup=setup, config=config, params=sum(p.numel() for p in flow.parameters()),
                steps_per_s=steps_per_s, memory=memory,
                images_per_s=measure_sampling(flow, setup, device, bf16, repeats),
                eval_s_per_image=measure_evaluation(flow, setup, device, bf16))


def table(results: list[dict], device: str) -> str:
    memory_kind = "peak allocated" if device.startswith("cuda") else "peak RSS growth"
    lines = [f"| config | image | params | train batch | train steps/s | train memory ({memory_kind}, MiB) | "
             f"sample batch | sampling img/s | K | draws per pass | K-sample eval, s/image |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["setup"]
        lines.append(f"| {r['name']} ({s.preset}) | {'x'.join(map(str, s.data.shape))} | {r['params'] / 1e6:.2f} M | "
                     f"{s.train_batch} | {r['steps_per_s']:.3g} | {r['memory']:.0f} | {s.sample_batch} | "
                     f"{r['images_per_s']:.3g} | {s.eval_samples} | {s.eval_sample_batch} | "
                     f"{r['eval_s_per_image']:.3g} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--configs", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timed sampling calls per setup")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file for the tables")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.bf16 and not args.device.startswith("cuda"):
        parser.error("--bf16 autocast is applied on CUDA only")
    if args.threads:
        torch.set_num_threads(args.threads)

    jobs = [(name, args.device, args.bf16, args.train_steps, args.repeats, torch.get_num_threads())
            for name in args.configs]
    if args.device == "cpu":
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            results = [pool.apply(run_setup, job) for job in jobs]
    else:
        results = [run_setup(*job) for job in jobs]

    device = torch.device(args.device)
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
        hardware = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads: "
                    f"{torch.get_num_threads()}{load}")
    header = (f"DenseFlow benchmark on {args.device} ({hardware}), {'bf16 autocast' if args.bf16 else 'fp32'}, "
              f"torch {torch.__version__}; `python benchmarks/denseflow.py {' '.join(sys.argv[1:])}`")
    report = f"{header}\n\n{table(results, args.device)}\n"
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
