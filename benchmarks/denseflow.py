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

from dataclasses import dataclass

import common
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


def levels(setup: Setup, batch: int, device: torch.device) -> torch.Tensor:
    return torch.randint(0, setup.data.num_bins, (batch, *setup.data.shape), device=device).float()


def measure_training(flow, setup: Setup, device: torch.device, bf16: bool, steps: int) -> tuple[float, float]:
    """Steps per second and peak memory (MiB) of AdamW training steps."""
    optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4)
    x = levels(setup, setup.train_batch, device)
    flow.train()

    def step() -> None:
        with common.autocast(device, bf16):
            loss = flow.bits_per_dim(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with common.PeakMemory(device) as memory:
        seconds = common.seconds_per_call(step, device, steps)  # the warm-up step also initialises ActNorm
    flow.eval()
    return 1 / seconds, memory.mib


def measure_sampling(flow, setup: Setup, device: torch.device, bf16: bool, repeats: int) -> float:
    """Images per second of ``flow.sample``."""
    generator = torch.Generator(device=device).manual_seed(0)
    with common.autocast(device, bf16):
        seconds = common.seconds_per_call(lambda: flow.sample(setup.sample_batch, generator=generator), device,
                                          repeats)
    return setup.sample_batch / seconds


def measure_evaluation(flow, setup: Setup, device: torch.device, bf16: bool) -> float:
    """Seconds per image of the K-sample importance-weighted log-likelihood."""
    x = levels(setup, setup.eval_images, device)
    generator = torch.Generator(device=device).manual_seed(0)

    def evaluate(num_samples: int) -> None:
        flow.importance_weighted_log_prob(x, num_samples=num_samples, sample_batch_size=setup.eval_sample_batch,
                                          noise=generator)

    with common.autocast(device, bf16):
        evaluate(setup.eval_sample_batch)  # warm-up: one pass
        seconds = common.seconds_per_call(lambda: evaluate(setup.eval_samples), device, calls=1, warmup=0)
    return seconds / setup.eval_images


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
    memory = common.PeakMemory.kind(device)
    lines = [f"| config | image | params | train batch | train steps/s | train memory ({memory}, MiB) | "
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
    parser = common.make_parser(__doc__.splitlines()[0], output_help="Markdown file for the tables",
                                bf16_help="bf16 autocast (CUDA only)")
    common.add_setup_arguments(parser, list(SETUPS), train_steps=2, repeats=1,
                               repeats_help="timed sampling calls per setup")
    args = common.parse_args(parser)
    results = common.run_setups(run_setup, args)
    report = f"{common.report_header('DenseFlow benchmark', args.device, args.bf16)}\n\n{table(results, args.device)}\n"
    print(report)
    common.write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
