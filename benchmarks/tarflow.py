"""TarFlow speed: training steps/s and peak memory; sampling images/s with the KV cache against naive recomputation.

For a small and a medium configuration this prints one Markdown table (and writes it to ``--output``):

* training: AdamW steps per second on noise-augmented random images with labels, and the peak memory of the step
  (CUDA: ``torch.cuda.max_memory_allocated``; CPU: growth of the process's peak resident set, measured in a fresh
  process per configuration);
* sampling: images per second when inverting with the preallocated key/value cache (one token per Transformer call)
  and with the naive sampler that recomputes the whole prefix at every step, without and with classifier-free
  guidance (both passes batched into one forward).

Usage::

    python benchmarks/tarflow.py                          # CPU, fp32, writes benchmarks/results/tarflow_cpu.md
    python benchmarks/tarflow.py --device cuda --bf16 --output benchmarks/results/tarflow_h100_bf16.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nf_tarflow import TarFlow, TarFlowConfig


@dataclass
class Setup:
    """One benchmarked model and the batch sizes used for it."""

    image_shape: tuple[int, int, int]
    num_classes: int
    options: dict = field(default_factory=dict)
    train_batch: int = 64
    sample_batch: int = 64


SETUPS = {
    "small": Setup((1, 8, 8), 10, dict(patch_size=2, channels=64, num_blocks=4, layers_per_block=2, head_dim=32),
                   train_batch=64, sample_batch=64),
    "medium": Setup((3, 32, 32), 10, dict(patch_size=4, channels=256, num_blocks=4, layers_per_block=4, head_dim=64),
                    train_batch=32, sample_batch=16),
}
GUIDANCE = dict(guidance=2.0, attn_temp=1.0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(setup: Setup, device: torch.device) -> TarFlow:
    config = TarFlowConfig(**setup.options, attention_backend="auto")
    torch.manual_seed(0)
    flow = TarFlow(config, setup.image_shape, setup.num_classes).to(device)
    # A fresh model's output projections are zero; random ones make sampling do representative arithmetic.
    with torch.no_grad():
        for block in flow.blocks:
            block.proj_out.weight.normal_(0.0, 1e-3)
    return flow


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on CUDA when asked (TarFlow keeps its layer norms and affine updates in fp32 inside it)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def measure_training(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool,
                     steps: int) -> tuple[float, float]:
    """Steps per second and peak memory (MiB) of AdamW training steps."""
    optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4)
    x = torch.rand(setup.train_batch, *setup.image_shape, device=device) * 2 - 1
    labels = torch.randint(0, setup.num_classes, (setup.train_batch,), device=device)
    flow.train()

    def step() -> None:
        noisy = x + flow.noise_std * torch.randn_like(x)
        with autocast(device, bf16):
            loss = -flow.log_prob(noisy, labels).mean() / flow.num_dims
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = peak_rss_mib()
    for _ in range(2):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        memory = peak_rss_mib() - rss_before
    flow.eval()
    return steps / elapsed, memory


def measure_sampling(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool, kv_cache: bool, guided: bool,
                     repeats: int) -> float:
    """Images per second of ``flow.sample``."""
    batch = setup.sample_batch
    labels = torch.randint(0, setup.num_classes, (batch,), device=device)
    kwargs = GUIDANCE if guided else {}
    generator = torch.Generator(device=device).manual_seed(0)
    with autocast(device, bf16):
        flow.sample(batch, labels, generator=generator, kv_cache=kv_cache, **kwargs)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            flow.sample(batch, labels, generator=generator, kv_cache=kv_cache, **kwargs)
        synchronize(device)
    return repeats * batch / (time.perf_counter() - start)


def run_setup(name: str, device_name: str, bf16: bool, train_steps: int, repeats: int, threads: int) -> dict:
    """Every measurement of one setup (run in its own process on CPU, so that its peak memory is its own)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    setup = SETUPS[name]
    flow = build(setup, device)
    steps_per_s, memory = measure_training(flow, setup, device, bf16, train_steps)
    sampling = {(cache, guided): measure_sampling(flow, setup, device, bf16, cache, guided, repeats)
                for guided in (False, True) for cache in (True, False)}
    num_tokens, token_dim = flow.prior.event_shape
    return dict(name=name, setup=setup, tokens=f"{num_tokens}x{token_dim}",
                params=sum(p.numel() for p in flow.parameters()), steps_per_s=steps_per_s, memory=memory,
                sampling=sampling)


def table(results: list[dict], device: str) -> str:
    memory_kind = "peak allocated" if device.startswith("cuda") else "peak RSS growth"
    lines = [
        f"| config | image | tokens (T x D) | params | train batch | train steps/s | train memory ({memory_kind}, "
        f"MiB) | sample batch | guidance | KV cache img/s | naive img/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        setup = r["setup"]
        for guided in (False, True):
            cached, naive = r["sampling"][(True, guided)], r["sampling"][(False, guided)]
            first = (f"| {r['name']} | {'x'.join(map(str, setup.image_shape))} | {r['tokens']} | "
                     f"{r['params'] / 1e6:.2f} M | {setup.train_batch} | {r['steps_per_s']:.2f} | {r['memory']:.0f} | "
                     if not guided else "| | | | | | | | ")
            lines.append(f"{first}{setup.sample_batch} | {'cfg 2.0' if guided else 'none'} | {cached:.1f} | "
                         f"{naive:.1f} | {cached / naive:.1f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the Transformers (CUDA only)")
    parser.add_argument("--configs", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="timed sampling calls per setting")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file for the table")
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

    if args.device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(args.device)
    else:
        hardware = f"{platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}"
    header = (f"TarFlow benchmark on {args.device} ({hardware}), {'bf16 autocast' if args.bf16 else 'fp32'}, "
              f"torch {torch.__version__}; "
              f"`python benchmarks/tarflow.py {' '.join(sys.argv[1:])}`")
    report = f"{header}\n\n{table(results, args.device)}\n"
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
