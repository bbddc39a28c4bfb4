"""TarFlow speed: training steps/s and peak memory; sampling images/s with the KV cache against naive recomputation.

For a small and a medium configuration this prints one Markdown table (and writes it to ``--output``):

* training: AdamW steps per second on noise-augmented random images with labels, and the peak memory of the first
  two steps (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the rise of the process's peak resident set, measured in
  a fresh process per configuration);
* sampling: images per second when inverting with the preallocated key/value cache (one token per Transformer call)
  and with the naive sampler that recomputes the whole prefix at every step, without and with classifier-free
  guidance (both passes batched into one forward).

Timed with the method of ``common.py`` (see benchmarks/README.md): the four sampling settings take turns, and the
speed-up is the ratio of their medians with the range of the per-round ratios.

Usage::

    python benchmarks/tarflow.py                          # CPU, fp32, prints the table
    python benchmarks/tarflow.py --threads 1 --output benchmarks/results/tarflow_cpu.md
    python benchmarks/tarflow.py --tiny                   # a seconds-long check that the script works
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
# --tiny: a tiny stand-in for every setup, to check that the script works.
TINY_OPTIONS = dict(patch_size=2, channels=16, num_blocks=2, layers_per_block=1, head_dim=8)
TINY_SETUPS = {"small": Setup((1, 4, 4), 10, TINY_OPTIONS, train_batch=4, sample_batch=2),
               "medium": Setup((3, 4, 4), 10, TINY_OPTIONS, train_batch=4, sample_batch=2)}
GUIDANCE = dict(guidance=2.0, attn_temp=1.0)
# The sampling settings: (KV cache, classifier-free guidance) by name.
SAMPLERS = {"KV cache": (True, False), "naive": (False, False), "KV cache, cfg": (True, True),
            "naive, cfg": (False, True)}


def setups(tiny: bool) -> dict[str, Setup]:
    return TINY_SETUPS if tiny else SETUPS


def build(setup: Setup, device: torch.device) -> TarFlow:
    config = TarFlowConfig(**setup.options, attention_backend="auto")
    torch.manual_seed(0)
    flow = TarFlow(config, setup.image_shape, setup.num_classes).to(device)
    # A fresh model's output projections are zero; random ones make sampling do representative arithmetic.
    with torch.no_grad():
        for block in flow.blocks:
            block.proj_out.weight.normal_(0.0, 1e-3)
    return flow


def training_step(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool):
    """One AdamW step on noise-augmented random images with labels, as a function of no arguments."""
    optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4)
    x = torch.rand(setup.train_batch, *setup.image_shape, device=device) * 2 - 1
    labels = torch.randint(0, setup.num_classes, (setup.train_batch,), device=device)

    def step() -> None:
        flow.train()
        noisy = x + flow.noise_std * torch.randn_like(x)
        with common.autocast(device, bf16):
            loss = -flow.log_prob(noisy, labels).mean() / flow.num_dims
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def sampling(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool, kv_cache: bool, guided: bool):
    """One ``flow.sample`` call of a batch, as a function of no arguments."""
    labels = torch.randint(0, setup.num_classes, (setup.sample_batch,), device=device)
    kwargs = GUIDANCE if guided else {}
    generator = torch.Generator(device=device).manual_seed(0)

    def sample() -> None:
        flow.eval()
        with torch.no_grad(), common.autocast(device, bf16):  # TarFlow keeps layer norms and affine updates in fp32
            flow.sample(setup.sample_batch, labels, generator=generator, kv_cache=kv_cache, **kwargs)

    return sample


def training_memory(name: str, device_name: str, bf16: bool, threads: int, tiny: bool) -> float:
    """Peak memory (MiB) of the first training steps of one setup (run in a fresh process)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    setup = setups(tiny)[name]
    flow = build(setup, device)
    step = training_step(flow, setup, device, bf16)
    with common.PeakMemory(device) as memory:
        for _ in range(2):
            step()
    return memory.mib


def measure(name: str, args) -> dict:
    """Training steps/s and the four sampling settings' images/s of one setup, timed with the shared method."""
    device = torch.device(args.device)
    setup = setups(args.tiny)[name]
    flow = build(setup, device)
    training = common.time_variants({"train": training_step(flow, setup, device, args.bf16)}, args, device)
    timings = common.time_variants({sampler: sampling(flow, setup, device, args.bf16, *setting)
                                    for sampler, setting in SAMPLERS.items()}, args, device)
    num_tokens, token_dim = flow.prior.event_shape
    return dict(name=name, setup=setup, tokens=f"{num_tokens}x{token_dim}",
                params=sum(p.numel() for p in flow.parameters()), steps_per_s=training["train"].rate(),
                sampling=timings)


def table(results: list[dict], memory: dict[str, list[float]], device: str) -> str:
    kind = common.PeakMemory.kind(device)
    lines = [
        f"| config | image | tokens (T x D) | params | train batch | train steps/s | train memory ({kind}, MiB) | "
        f"sample batch | guidance | KV cache img/s | naive img/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        setup, timings = r["setup"], r["sampling"]
        for guided in (False, True):
            cached, naive = ("KV cache, cfg", "naive, cfg") if guided else ("KV cache", "naive")
            first = (f"| {r['name']} | {'x'.join(map(str, setup.image_shape))} | {r['tokens']} | "
                     f"{r['params'] / 1e6:.2f} M | {setup.train_batch} | {r['steps_per_s'].format()} | "
                     f"{common.Spread.of(memory[r['name']]).median:.0f} | " if not guided else "| | | | | | | | ")
            lines.append(f"{first}{setup.sample_batch} | {'cfg 2.0' if guided else 'none'} | "
                         f"{timings[cached].rate(setup.sample_batch).format()} | "
                         f"{timings[naive].rate(setup.sample_batch).format()} | "
                         f"{timings.speedup(cached, naive).format(suffix='x')} |")
    return "\n".join(lines)


def main() -> int:
    parser = common.make_parser(__doc__.splitlines()[0], threads=None,
                                bf16_help="bf16 autocast of the Transformers (CUDA, or a CPU with native bf16)")
    parser.add_argument("--configs", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = common.parse_args(parser)
    stamp = common.Stamp("TarFlow benchmark", args)
    memory = common.run_alternating(training_memory, {name: (name, args.device, args.bf16, args.threads, args.tiny)
                                                      for name in args.configs}, args.memory_rounds)
    results = [measure(name, args) for name in args.configs]
    common.write_report(args.output, f"{stamp.render()}\n{table(results, memory, args.device)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
