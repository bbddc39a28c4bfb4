"""TarFlow speed: training steps/s and peak memory; sampling images/s with the KV cache against naive recomputation.

For a small and a medium configuration this prints one Markdown table (and writes it to ``--output``):

* training: AdamW steps per second on noise-augmented random images with labels, and the peak memory of the step
  (CUDA: ``torch.cuda.max_memory_allocated``; CPU: growth of the process's peak resident set, measured in a fresh
  process per configuration);
* sampling: images per second when inverting with the preallocated key/value cache (one token per Transformer call)
  and with the naive sampler that recomputes the whole prefix at every step, without and with classifier-free
  guidance (both passes batched into one forward).

With ``--official-root PATH`` it instead compares nf's TarFlow with the official implementation (apple/ml-tarflow,
``PATH/transformer_flow.py``; third-party, never committed here) at the configurations of ``OFFICIAL_CONFIGS``. nf's
model is loaded from the official model's state dict (``from_official_state_dict``), so both compute the same
function of the same weights on the same inputs. The variants take turns (``--repeats`` rounds, in reverse order
every other round) and the median round of each is reported with the spread of the rounds:

* sampling, without and with classifier-free guidance (2.0), from the same prior draw: the official ``reverse`` (fp32)
  against nf's sequential decoding, its Jacobi sampler, and both under bf16 autocast, with the largest difference of
  each nf sample from the official one and the Jacobi iterations per block;
* training steps: the official loss and ``torch.optim.AdamW`` with its default per-tensor loop (the official
  ``train.py``) against nf's ``-log_prob / D`` and the fused AdamW of nf's Trainer, in fp32 and under bf16 autocast.

Before timing, the official code is checked against the reference fixtures (``--fixtures``): its latents and
log-determinants, and its samples for every recorded guidance setting.

Usage::

    python benchmarks/tarflow.py                          # CPU, fp32, prints the table
    python benchmarks/tarflow.py --threads 1 --train-steps 5 --repeats 2 --output benchmarks/results/tarflow_cpu.md
    python benchmarks/tarflow.py --device cuda --bf16 --output benchmarks/results/tarflow_h100_bf16.md
    python benchmarks/tarflow.py --official-root /tmp/tarflow_official --threads 1 --repeats 5 \\
        --output benchmarks/results/tarflow_vs_official_cpu.md
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import common
import torch
from torch.utils.flop_counter import FlopCounterMode

from nfkit_core import noise
from nfkit_core.testing.fixtures import reference_fixture_dir
from nfkit_tarflow import TarFlow, TarFlowConfig, from_official_state_dict


@dataclass
class Setup:
    """One benchmarked model and the batch sizes used for it."""

    image_shape: tuple[int, int, int]
    num_classes: int
    options: dict = field(default_factory=dict)
    train_batch: int = 64
    sample_batch: int = 64
    naive: bool = True  # also time the naive sampler (quadratic in the tokens: too slow for large models)


SETUPS = {
    "small": Setup((1, 8, 8), 10, dict(patch_size=2, channels=64, num_blocks=4, layers_per_block=2, head_dim=32),
                   train_batch=64, sample_batch=64),
    "medium": Setup((3, 32, 32), 10, dict(patch_size=4, channels=256, num_blocks=4, layers_per_block=4, head_dim=64),
                    train_batch=32, sample_batch=16),
    # ImageNet 64x64-sized: the paper's width and depth (768 channels, 8 blocks x 8 layers) with patch 4 (256 tokens).
    "imagenet64": Setup((3, 64, 64), 1000, dict(patch_size=4, channels=768, num_blocks=8, layers_per_block=8,
                                               head_dim=64), train_batch=64, sample_batch=32, naive=False),
}
DEFAULT_CONFIGS = ["small", "medium"]
# Dense (no sparsity) peak TFLOP/s from the data sheets, (bf16, fp32 without TF32), for the MFU column.
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5)}
GUIDANCE = dict(guidance=2.0, attn_temp=1.0)


# The official constructor arguments compared with ``--official-root`` (the official model fixes head_dim=64) and the
# batch sizes used for them.
OFFICIAL_CONFIGS = {
    "small": (dict(in_channels=1, img_size=8, patch_size=2, channels=64, num_blocks=4, layers_per_block=2,
                   num_classes=10), Setup((1, 8, 8), 10, train_batch=64, sample_batch=32)),
    "medium": (dict(in_channels=3, img_size=32, patch_size=4, channels=256, num_blocks=4, layers_per_block=4,
                    num_classes=10), Setup((3, 32, 32), 10, train_batch=32, sample_batch=16)),
}
JACOBI = dict(sampler="jacobi", tolerance=1e-6)
SAMPLERS = {"sequential": (dict(sampler="sequential"), False), "jacobi": (JACOBI, False),
            "sequential bf16": (dict(sampler="sequential"), True), "jacobi bf16": (JACOBI, True)}


def build(setup: Setup, device: torch.device) -> TarFlow:
    config = TarFlowConfig(**setup.options, attention_backend="auto")
    torch.manual_seed(0)
    flow = TarFlow(config, setup.image_shape, setup.num_classes).to(device)
    # A fresh model's output projections are zero; random ones make sampling do representative arithmetic.
    with torch.no_grad():
        for block in flow.blocks:
            block.proj_out.weight.normal_(0.0, 1e-3)
    return flow


def count_flops(fn) -> float:
    """Floating-point operations of one call of ``fn`` (``torch.utils.flop_counter``: matmuls and attention)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def measure_training(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool,
                     steps: int) -> tuple[float, float, float]:
    """Steps per second, peak memory (MiB) and model FLOPs per step of AdamW training steps."""
    optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4,
                                  fused=device.type in ("cpu", "cuda"))
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
    flops = counted_with_sdpa(flow, step)
    flow.eval()
    return 1 / seconds, memory.mib, flops


def counted_with_sdpa(flow: TarFlow, fn) -> float:
    """FLOPs of ``fn()`` counted with PyTorch SDPA attention (the counter does not see flash-attn's own kernels)."""
    backends = [layer.attention.backend for block in flow.blocks for layer in block.attn_blocks]
    flow.set_attention_backend("sdpa")
    try:
        return count_flops(fn)
    finally:
        layers = [layer for block in flow.blocks for layer in block.attn_blocks]
        for layer, backend in zip(layers, backends, strict=True):
            layer.attention.backend = backend


def measure_sampling(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool, options: dict, guided: bool,
                     repeats: int) -> tuple[float, list[int]]:
    """Images per second of ``flow.sample`` with the sampler ``options``, and the Jacobi iterations per block."""
    batch = setup.sample_batch
    labels = torch.randint(0, setup.num_classes, (batch,), device=device)
    kwargs = dict(GUIDANCE if guided else {}, **options)
    generator = torch.Generator(device=device).manual_seed(0)
    with common.autocast(device, bf16):  # TarFlow keeps its layer norms and affine updates in fp32 inside it
        seconds = common.seconds_per_call(lambda: flow.sample(batch, labels, generator=generator, **kwargs), device,
                                          repeats)
    return batch / seconds, flow.last_iterations


def sampling_flops(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool, guided: bool) -> float:
    """Model FLOPs of one ``sample`` call: those of sequential decoding with the KV cache (the useful work; the
    Jacobi sampler's repeated iterations are not counted)."""
    labels = torch.randint(0, setup.num_classes, (setup.sample_batch,), device=device)
    kwargs = dict(GUIDANCE if guided else {}, sampler="sequential")

    def sample() -> None:
        with common.autocast(device, bf16):
            flow.sample(setup.sample_batch, labels, **kwargs)
    return counted_with_sdpa(flow, sample)


def run_setup(name: str, device_name: str, bf16: bool, train_steps: int, repeats: int, threads: int) -> dict:
    """Every measurement of one setup (run in its own process on CPU, so that its peak memory is its own)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    setup = SETUPS[name]
    flow = build(setup, device)
    steps_per_s, memory, train_flops = measure_training(flow, setup, device, bf16, train_steps)
    samplers = {"kv": dict(sampler="sequential", kv_cache=True), "jacobi": JACOBI}
    if setup.naive:
        samplers["naive"] = dict(sampler="sequential", kv_cache=False)
    sampling = {(sampler, guided): measure_sampling(flow, setup, device, bf16, options, guided, repeats)
                for guided in (False, True) for sampler, options in samplers.items()}
    flops = {guided: sampling_flops(flow, setup, device, bf16, guided) for guided in (False, True)}
    num_tokens, token_dim = flow.prior.event_shape
    return dict(name=name, setup=setup, tokens=f"{num_tokens}x{token_dim}",
                params=sum(p.numel() for p in flow.parameters()), steps_per_s=steps_per_s, memory=memory,
                train_flops=train_flops, sampling=sampling, sample_flops=flops)


def import_official(root: Path):
    """The official ``transformer_flow`` module from ``root``."""
    if not (root / "transformer_flow.py").is_file():
        raise FileNotFoundError(f"--official-root {root}: transformer_flow.py not found (a checkout of "
                                f"apple/ml-tarflow)")
    sys.path.insert(0, str(root))
    import transformer_flow
    return transformer_flow


def check_official(official_module, fixtures: Path) -> list[str]:
    """The official code on the reference fixtures: the largest deviation of its latents, log-determinants and
    samples from the recorded ones, one line per fixture."""
    lines = []
    for path in sorted(fixtures.glob("tarflow_*.pt")):
        recorded = torch.load(path, map_location="cpu", weights_only=False)
        model = official_module.Model(**recorded["config"])
        model.load_state_dict(recorded["state_dict"])
        model.eval()
        labels = recorded.get("y")
        with torch.no_grad():
            z, _, logdets = model(recorded["x"], labels)
            samples = [(model.reverse(recorded["noise"].clone(), labels, **s["kwargs"]) - s["x"]).abs().max().item()
                       for s in recorded["samples"].values()]
        lines.append(f"`{path.name}`: latents {(z - recorded['z']).abs().max().item():.1e}, log-dets "
                     f"{(logdets - recorded['logdets']).abs().max().item():.1e}, samples ({len(samples)} guidance "
                     f"settings) {max(samples):.1e}")
    if not lines:
        raise FileNotFoundError(f"no tarflow_*.pt reference fixtures in {fixtures} (see --fixtures)")
    return lines


def seconds_per_round(fns: dict, device: torch.device, calls: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns`` in every round: after one untimed call of each, ``rounds`` rounds in which
    every function runs ``calls`` times (in reverse order every other round), so all see the same background load."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(rounds):
        for name in (list(fns) if round_ % 2 == 0 else list(reversed(fns))):
            times[name].append(common.seconds_per_call(fns[name], device, calls, warmup=0))
    return times


def median_spread(times: list[float]) -> tuple[float, float, float]:
    """Median, fastest and slowest round."""
    return statistics.median(times), min(times), max(times)


def run_official_setup(name: str, device_name: str, train_steps: int, repeats: int, threads: int,
                       root: Path) -> dict:
    """The official TarFlow and nf's (every sampler, fp32 and bf16) at one official configuration, from the same
    weights and on the same inputs."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    arguments, setup = OFFICIAL_CONFIGS[name]
    official_module = import_official(root)
    torch.manual_seed(0)
    official = official_module.Model(**arguments)
    with torch.no_grad():  # a fresh model's output projections are zero: random ones make the blocks non-trivial
        for block in official.blocks:
            block.proj_out.weight.normal_(0.0, 1e-3)
    official = official.to(device).eval()
    ours = from_official_state_dict(official.state_dict(), arguments).to(device).eval()
    result = dict(name=name, setup=setup, arguments=arguments, params=sum(p.numel() for p in ours.parameters()))

    n = setup.sample_batch
    num_tokens, token_dim = ours.prior.event_shape
    z = torch.randn(n, num_tokens, token_dim, device=device)
    labels = torch.randint(0, setup.num_classes, (n,), device=device)

    def nf_sample(options: dict, bf16: bool, weight: float) -> torch.Tensor:
        with noise.use(noise.Replay([z])), common.autocast(device, bf16):
            return ours.sample(n, labels, guidance=weight, **options)

    def official_sample(weight: float) -> torch.Tensor:
        with torch.no_grad():
            return official.reverse(z.clone(), labels, guidance=weight)

    result["sampling"] = {}
    for weight in (0.0, 2.0):
        reference = official_sample(weight)
        errors, iterations = {}, {}
        for variant, (options, bf16) in SAMPLERS.items():
            errors[variant] = (nf_sample(options, bf16, weight) - reference).abs().max().item()
            iterations[variant] = ours.last_iterations
        fns = {"official": functools.partial(official_sample, weight)}
        fns.update({variant: functools.partial(nf_sample, options, bf16, weight)
                    for variant, (options, bf16) in SAMPLERS.items()})
        seconds = seconds_per_round(fns, device, 1, repeats)
        result["sampling"][weight] = dict(seconds=seconds, errors=errors, iterations=iterations)

    x = torch.rand(setup.train_batch, *setup.image_shape, device=device) * 2 - 1
    train_labels = torch.randint(0, setup.num_classes, (setup.train_batch,), device=device)

    def training_step(flow, loss_fn, bf16: bool, fused: bool):
        optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4, fused=fused)

        def step() -> None:
            flow.train()
            noisy = x + 0.05 * torch.randn_like(x)
            with common.autocast(device, bf16):
                loss = loss_fn(noisy)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    def official_loss(noisy: torch.Tensor) -> torch.Tensor:
        z, _, logdets = official(noisy, train_labels)
        return official.get_loss(z, logdets)

    def nf_loss(noisy: torch.Tensor) -> torch.Tensor:
        return -ours.log_prob(noisy, train_labels).mean() / ours.num_dims

    steps = {"official": training_step(official, official_loss, False, False),
             "fp32": training_step(ours, nf_loss, False, True), "bf16": training_step(ours, nf_loss, True, True)}
    result["training"] = seconds_per_round(steps, device, train_steps, repeats)
    return result


def official_table(results: list[dict]) -> str:
    """Sampling and training: median seconds (fastest-slowest round) and the official time over nf's median."""
    lines = ["| config | params | task | batch | official s | nf variant | nf s | speed-up (median, range) | "
             "max sample difference from official | Jacobi iterations per block |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        setup = r["setup"]
        head = f"{r['name']} ({'x'.join(map(str, setup.image_shape))})"
        for weight, sampling in r["sampling"].items():
            seconds = sampling["seconds"]
            official, fastest, slowest = median_spread(seconds["official"])
            for variant in SAMPLERS:
                med, lo, hi = median_spread(seconds[variant])
                its = sampling["iterations"][variant]
                lines.append(
                    f"| {head} | {r['params'] / 1e6:.2f} M | sampling, {'CFG 2.0' if weight else 'no guidance'} | "
                    f"{setup.sample_batch} | {official:.3g} ({fastest:.3g}-{slowest:.3g}) | {variant} | "
                    f"{med:.3g} ({lo:.3g}-{hi:.3g}) | **{official / med:.2f}x** "
                    f"({fastest / hi:.2f}-{slowest / lo:.2f}) | "
                    f"{sampling['errors'][variant]:.1e} | {', '.join(map(str, its)) if any(its) else '-'} |")
        official, fastest, slowest = median_spread(r["training"]["official"])
        for variant in ("fp32", "bf16"):
            med, lo, hi = median_spread(r["training"][variant])
            lines.append(f"| {head} | {r['params'] / 1e6:.2f} M | training step | {setup.train_batch} | "
                         f"{official:.3g} ({fastest:.3g}-{slowest:.3g}) | {variant} | {med:.3g} ({lo:.3g}-{hi:.3g}) | "
                         f"**{official / med:.2f}x** ({fastest / hi:.2f}-{slowest / lo:.2f}) | | |")
    return "\n".join(lines)


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


def table(results: list[dict], device: str, peak: float | None) -> str:
    memory = common.PeakMemory.kind(device)

    def mfu(flops: float, per_second: float) -> str:
        return f"{100 * flops * per_second / peak:.2g}%" if peak else "-"

    lines = [
        f"| config | image | tokens (T x D) | params | train batch | train steps/s | train MFU | "
        f"train memory ({memory}, MiB) | sample batch | guidance | KV cache img/s | sampling MFU | Jacobi img/s "
        f"(iterations per block) | naive img/s | KV cache / naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        setup = r["setup"]
        for guided in (False, True):
            cached, _ = r["sampling"][("kv", guided)]
            jacobi, iterations = r["sampling"][("jacobi", guided)]
            naive = r["sampling"].get(("naive", guided), (None, None))[0]
            first = (f"| {r['name']} | {'x'.join(map(str, setup.image_shape))} | {r['tokens']} | "
                     f"{r['params'] / 1e6:.2f} M | {setup.train_batch} | {r['steps_per_s']:.3g} | "
                     f"{mfu(r['train_flops'], r['steps_per_s'])} | {r['memory']:.0f} | "
                     if not guided else "| | | | | | | | | ")
            naive_cells = f"{naive:.3g} | {cached / naive:.1f}x" if naive else "- | -"
            lines.append(f"{first}{setup.sample_batch} | {'cfg 2.0' if guided else 'none'} | {cached:.3g} | "
                         f"{mfu(r['sample_flops'][guided], cached / setup.sample_batch)} | {jacobi:.3g} "
                         f"({', '.join(map(str, iterations))}) | {naive_cells} |")
    return "\n".join(lines)


def main() -> int:
    parser = common.make_parser(__doc__.splitlines()[0],
                                bf16_help="bf16 autocast of the Transformers (CUDA, or a CPU with native bf16)")
    common.add_setup_arguments(parser, list(SETUPS), train_steps=10, repeats=2,
                               repeats_help="timed sampling calls per setting (with --official-root: rounds)")
    parser.set_defaults(configs=DEFAULT_CONFIGS)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for the MFU columns (default: known GPUs' data sheets)")
    parser.add_argument("--official-root", type=Path, default=None, metavar="PATH",
                        help="folder holding the official transformer_flow.py (apple/ml-tarflow): compare with it")
    parser.add_argument("--fixtures", type=Path, default=reference_fixture_dir(), metavar="DIR",
                        help="with --official-root: the reference fixtures the official code must reproduce "
                             "(default: %(default)s)")
    args = common.parse_args(parser)
    if args.official_root is not None:
        if args.bf16:
            parser.error("--official-root always measures nf in fp32 and in bf16; leave out --bf16")
        if args.threads:
            torch.set_num_threads(args.threads)
        root = args.official_root.resolve()
        checks = check_official(import_official(root), args.fixtures)
        jobs = [(name, args.device, args.train_steps, args.repeats, torch.get_num_threads(), root)
                for name in args.configs]
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results = common.run_each(run_official_setup, jobs, fresh_process=args.device == "cpu")
        header = common.report_header("TarFlow: nf against the official implementation", args.device, False,
                                      precision="official in fp32, nf in fp32 and under bf16 autocast")
        fixture_lines = "\n".join(f"- {line}" for line in checks)
        report = (f"{header}; started {started}\n\nThe official code reproduces the reference fixtures (largest "
                  f"differences):\n\n{fixture_lines}\n\n{official_table(results)}\n")
    else:
        results = common.run_setups(run_setup, args)
        header = common.report_header("TarFlow benchmark", args.device, args.bf16)
        peak = peak_flops(args.device, args.bf16, args.peak_tflops)
        report = f"{header}\n\n{table(results, args.device, peak)}\n"
    print(report)
    common.write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
