"""TarFlow speed: training steps/s and peak memory; sampling images/s with the KV cache against naive recomputation.

For a small and a medium configuration this prints one Markdown table (and writes it to ``--output``):

* training: AdamW steps per second on noise-augmented random images with labels, and the peak memory of the step
  (CUDA: ``torch.cuda.max_memory_allocated``; CPU: growth of the process's peak resident set, measured in a fresh
  process per configuration);
* sampling: images per second when inverting with the preallocated key/value cache (one token per Transformer call)
  and with the naive sampler that recomputes the whole prefix at every step, without and with classifier-free
  guidance (both passes batched into one forward).

Usage::

    python benchmarks/tarflow.py                          # CPU, fp32, prints the table
    python benchmarks/tarflow.py --threads 1 --train-steps 5 --repeats 2 --output benchmarks/results/tarflow_cpu.md
    python benchmarks/tarflow.py --device cuda --bf16 --output benchmarks/results/tarflow_h100_bf16.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

import common
import torch

from nfkit_tarflow import TarFlow, TarFlowConfig


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


def build(setup: Setup, device: torch.device) -> TarFlow:
    config = TarFlowConfig(**setup.options, attention_backend="auto")
    torch.manual_seed(0)
    flow = TarFlow(config, setup.image_shape, setup.num_classes).to(device)
    # A fresh model's output projections are zero; random ones make sampling do representative arithmetic.
    with torch.no_grad():
        for block in flow.blocks:
            block.proj_out.weight.normal_(0.0, 1e-3)
    return flow


def measure_training(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool,
                     steps: int) -> tuple[float, float]:
    """Steps per second and peak memory (MiB) of AdamW training steps."""
    optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4)
    x = torch.rand(setup.train_batch, *setup.image_shape, device=device) * 2 - 1
    labels = torch.randint(0, setup.num_classes, (setup.train_batch,), device=device)
    flow.train()

    def step() -> None:
        noisy = x + flow.noise_std * torch.randn_like(x)
        with common.autocast(device, bf16):
            loss = -flow.log_prob(noisy, labels).mean() / flow.num_dims
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with common.PeakMemory(device) as memory:
        seconds = common.seconds_per_call(step, device, steps, warmup=2)
    flow.eval()
    return 1 / seconds, memory.mib


def measure_sampling(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool, kv_cache: bool, guided: bool,
                     repeats: int) -> float:
    """Images per second of ``flow.sample``."""
    batch = setup.sample_batch
    labels = torch.randint(0, setup.num_classes, (batch,), device=device)
    kwargs = GUIDANCE if guided else {}
    generator = torch.Generator(device=device).manual_seed(0)
    with common.autocast(device, bf16):  # TarFlow keeps its layer norms and affine updates in fp32 inside it
        seconds = common.seconds_per_call(
            lambda: flow.sample(batch, labels, generator=generator, kv_cache=kv_cache, **kwargs), device, repeats)
    return batch / seconds


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
    memory = common.PeakMemory.kind(device)
    lines = [
        f"| config | image | tokens (T x D) | params | train batch | train steps/s | train memory ({memory}, MiB) | "
        f"sample batch | guidance | KV cache img/s | naive img/s | speed-up |",
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
    parser = common.make_parser(__doc__.splitlines()[0],
                                bf16_help="bf16 autocast of the Transformers (CUDA, or a CPU with native bf16)")
    common.add_setup_arguments(parser, list(SETUPS), train_steps=10, repeats=2,
                               repeats_help="timed sampling calls per setting")
    args = common.parse_args(parser)
    results = common.run_setups(run_setup, args)
    report = f"{common.report_header('TarFlow benchmark', args.device, args.bf16)}\n\n{table(results, args.device)}\n"
    print(report)
    common.write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
