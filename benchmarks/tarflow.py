"""TarFlow speed: training steps/s and peak memory; sampling images/s with the KV cache, the Jacobi sampler and naive
recomputation.

For a small and a medium configuration (``--configs``; ``imagenet64`` adds an ImageNet-64-sized one) this prints one
Markdown table (and writes it to ``--output``):

* training: AdamW steps per second (the fused AdamW of nf's Trainer) on noise-augmented random images with labels,
  and the peak memory of the first two steps (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the rise of the
  process's peak resident set, measured in a fresh process per configuration);
* sampling: images per second when inverting with the preallocated key/value cache (one token per Transformer call),
  with the Jacobi sampler (and its iterations per block) and with the naive sampler that recomputes the whole prefix
  at every step, without and with classifier-free guidance (both passes batched into one forward);
* on CUDA, model FLOPs utilisation: FLOPs counted by ``torch.utils.flop_counter`` over the data sheet's peak (or
  ``--peak-tflops``).

With ``--official-root PATH`` it instead compares nf's TarFlow with the official implementation (apple/ml-tarflow,
``PATH/transformer_flow.py``; third-party, never committed here) at the configurations of ``OFFICIAL_CONFIGS``. nf's
model is loaded from the official model's state dict (``from_official_state_dict``), so both compute the same
function of the same weights on the same inputs:

* sampling, without and with classifier-free guidance (2.0), from the same prior draw: the official ``reverse`` (fp32)
  against nf's sequential decoding (eager, and through the compiled step: ``sampler="compiled"``, compiled during the
  warm-up calls), its Jacobi sampler, and sequential and Jacobi under bf16 autocast, with the largest difference of
  each nf sample from the official one and the Jacobi iterations per block;
* training steps: the official loss against nf's ``-log_prob / D`` (fp32 and under bf16 autocast), both with the same
  optimizer: ``torch.optim.AdamW`` with its default per-tensor loop (the official ``train.py``), and in rows of their
  own with the fused AdamW of nf's Trainer, which the official code could use too.

Before timing, the official code is checked against the reference fixtures (``--fixtures``): its latents and
log-determinants, and its samples for every recorded guidance setting.

Timed with the method of ``common.py`` (see benchmarks/README.md): the variants compared in a table cell take turns,
and a speed-up is the ratio of their medians with the range of the per-round ratios.

Usage::

    python benchmarks/tarflow.py                          # CPU, fp32, prints the table
    python benchmarks/tarflow.py --threads 1 --output benchmarks/results/tarflow_cpu.md
    python benchmarks/tarflow.py --tiny                   # a seconds-long check that the script works
    python benchmarks/tarflow.py --device cuda --bf16 --output benchmarks/results/tarflow_h100_bf16.md
    python benchmarks/tarflow.py --official-root /tmp/tarflow_official --threads 1 \\
        --output benchmarks/results/tarflow_vs_official_cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
# --tiny: a tiny stand-in for every setup, to check that the script works.
TINY_OPTIONS = dict(patch_size=2, channels=16, num_blocks=2, layers_per_block=1, head_dim=8)
TINY_SETUPS = {name: Setup((setup.image_shape[0], 4, 4), setup.num_classes, TINY_OPTIONS, train_batch=4,
                           sample_batch=2, naive=setup.naive) for name, setup in SETUPS.items()}
GUIDANCE = dict(guidance=2.0, attn_temp=1.0)
JACOBI = dict(sampler="jacobi", tolerance=1e-6)
# Under bf16 autocast the iterate moves by bf16 rounding (~1e-3) at every iteration: a tolerance above it.
JACOBI_BF16 = dict(sampler="jacobi", tolerance=1e-2)
# The samplers of the plain table, by name: the options of ``flow.sample``.
SAMPLERS = {"KV cache": dict(sampler="sequential", kv_cache=True), "Jacobi": JACOBI,
            "naive": dict(sampler="sequential", kv_cache=False)}

# The official constructor arguments compared with ``--official-root`` (the official model fixes head_dim=64) and the
# batch sizes used for them; with --tiny, the tiny ones.
OFFICIAL_CONFIGS = {
    "small": (dict(in_channels=1, img_size=8, patch_size=2, channels=64, num_blocks=4, layers_per_block=2,
                   num_classes=10), Setup((1, 8, 8), 10, train_batch=64, sample_batch=32)),
    "medium": (dict(in_channels=3, img_size=32, patch_size=4, channels=256, num_blocks=4, layers_per_block=4,
                    num_classes=10), Setup((3, 32, 32), 10, train_batch=32, sample_batch=16)),
}
TINY_OFFICIAL_CONFIGS = {
    name: (dict(arguments, img_size=4, patch_size=2, channels=64, num_blocks=2, layers_per_block=1),
           Setup((setup.image_shape[0], 4, 4), setup.num_classes, train_batch=4, sample_batch=2))
    for name, (arguments, setup) in OFFICIAL_CONFIGS.items()
}
# nf's variants against the official sampler: (sampler options, bf16 autocast) by name.
OFFICIAL_SAMPLERS = {"sequential": (dict(sampler="sequential"), False), "compiled": (dict(sampler="compiled"), False),
                     "jacobi": (JACOBI, False), "sequential bf16": (dict(sampler="sequential"), True),
                     "jacobi bf16": (JACOBI_BF16, True)}
# What ``--profile`` profiles (fp32): sampling by the official code, nf's sequential decoding and its Jacobi sampler,
# and the training step of each with the same optimizer (the per-tensor AdamW of the official train.py).
PROFILED_SAMPLERS = ("official", "sequential", "jacobi")
PROFILED_TRAINING = ("official", "fp32")
# The operators of the linear layers' matrix products (forward and backward) and of attention, by profiler name.
GEMM_OPS = ("aten::addmm", "aten::mm")
# nf's training variants against the official step with the same optimizer: (fused AdamW, bf16 autocast) by name.
OFFICIAL_TRAINING = {"fp32": (False, False), "bf16": (False, True), "fp32, fused AdamW": (True, False),
                     "bf16, fused AdamW": (True, True)}


def official_training_baseline(variant: str) -> str:
    """The official training variant with the same optimizer as nf's ``variant``."""
    return "official, fused AdamW" if OFFICIAL_TRAINING[variant][0] else "official"


def setups(tiny: bool) -> dict[str, Setup]:
    return TINY_SETUPS if tiny else SETUPS


def official_configs(tiny: bool) -> dict[str, tuple[dict, Setup]]:
    return TINY_OFFICIAL_CONFIGS if tiny else OFFICIAL_CONFIGS


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
    """One step of the fused AdamW of nf's Trainer on noise-augmented random images with labels, as a function of no
    arguments."""
    optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4,
                                  fused=device.type in ("cpu", "cuda"))
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


def sampling(flow: TarFlow, setup: Setup, device: torch.device, bf16: bool, options: dict, guided: bool,
             iterations: dict | None = None, key: str | None = None):
    """One ``flow.sample`` call of a batch with the sampler ``options``, as a function of no arguments; it keeps the
    Jacobi iterations per block of its latest call in ``iterations[key]``."""
    labels = torch.randint(0, setup.num_classes, (setup.sample_batch,), device=device)
    kwargs = dict(GUIDANCE if guided else {}, **options)
    generator = torch.Generator(device=device).manual_seed(0)

    def sample() -> None:
        flow.eval()
        with torch.no_grad(), common.autocast(device, bf16):  # TarFlow keeps layer norms and affine updates in fp32
            flow.sample(setup.sample_batch, labels, generator=generator, **kwargs)
        if iterations is not None:
            iterations[key] = flow.last_iterations

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


def counted_with_sdpa(flow: TarFlow, fn) -> float:
    """FLOPs of one call of ``fn`` (``torch.utils.flop_counter``: matmuls and attention), counted with PyTorch SDPA
    attention (the counter does not see flash-attn's own kernels)."""
    layers = [layer for block in flow.blocks for layer in block.attn_blocks]
    backends = [layer.attention.backend for layer in layers]
    flow.set_attention_backend("sdpa")
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())
    finally:
        for layer, backend in zip(layers, backends, strict=True):
            layer.attention.backend = backend


def time_setups(args: argparse.Namespace) -> list[dict]:
    """:func:`measure` of every configuration (one process's share of the rounds: see
    ``common.time_in_processes``)."""
    count_flops = common.peak_flops(args.device, args.bf16, args.peak_tflops) is not None
    return [measure(name, args, count_flops) for name in args.configs]


def measure(name: str, args: argparse.Namespace, count_flops: bool) -> dict:
    """Training steps and every sampler's calls of one setup, timed with the shared method; with ``count_flops``,
    the model FLOPs of a training step and of sequential decoding with the KV cache (the useful work; the Jacobi
    sampler's repeated iterations are not counted)."""
    device = torch.device(args.device)
    setup = setups(args.tiny)[name]
    flow = build(setup, device)
    step = training_step(flow, setup, device, args.bf16)
    training = common.time_variants({"train": step}, args, device)
    samplers = {sampler: options for sampler, options in SAMPLERS.items() if setup.naive or sampler != "naive"}
    iterations: dict[tuple[str, bool], list[int]] = {}
    variants = {(sampler, guided): sampling(flow, setup, device, args.bf16, options, guided, iterations,
                                            (sampler, guided))
                for guided in (False, True) for sampler, options in samplers.items()}
    timings = common.time_variants({f"{sampler}{', cfg' if guided else ''}": fn
                                    for (sampler, guided), fn in variants.items()}, args, device)
    flops = {}
    if count_flops:
        flops["train"] = counted_with_sdpa(flow, step)
        for guided in (False, True):
            flops[guided] = counted_with_sdpa(flow, sampling(flow, setup, device, args.bf16, SAMPLERS["KV cache"],
                                                             guided))
    num_tokens, token_dim = flow.prior.event_shape
    return dict(name=name, tokens=f"{num_tokens}x{token_dim}", params=sum(p.numel() for p in flow.parameters()),
                training=training, sampling=timings, iterations=iterations, flops=flops)


def table(results: list[dict], memory: dict[str, list[float]], args: argparse.Namespace, peak: float | None) -> str:
    """Speed of nf's TarFlow, two rows (without and with guidance) per configuration."""
    kind = common.PeakMemory.kind(args.device)

    def mfu(r: dict, key, per_second: float) -> str:
        return f"{100 * r['flops'][key] * per_second / peak:.2g}%" if peak else "-"

    lines = [
        f"| config | image | tokens (T x D) | params | train batch | train steps/s | train MFU | "
        f"train memory ({kind}, MiB) | sample batch | guidance | KV cache img/s | sampling MFU | Jacobi img/s | "
        f"Jacobi iterations per block | naive img/s | KV cache / naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        setup, timings = setups(args.tiny)[r["name"]], r["sampling"]
        batch, steps_per_s = setup.sample_batch, r["training"]["train"].rate()
        for guided in (False, True):
            suffix = ", cfg" if guided else ""
            cached = timings[f"KV cache{suffix}"].rate(batch)
            first = (f"| {r['name']} | {'x'.join(map(str, setup.image_shape))} | {r['tokens']} | "
                     f"{r['params'] / 1e6:.2f} M | {setup.train_batch} | {steps_per_s.format()} | "
                     f"{mfu(r, 'train', steps_per_s.median)} | "
                     f"{common.Spread.of(memory[r['name']]).median:.0f} | " if not guided else "| | | | | | | | | ")
            naive_cells = (f"{timings[f'naive{suffix}'].rate(batch).format()} | "
                           f"{timings.speedup(f'KV cache{suffix}', f'naive{suffix}').format(suffix='x')}"
                           if setup.naive else "- | -")
            lines.append(f"{first}{batch} | {'cfg 2.0' if guided else 'none'} | {cached.format()} | "
                         f"{mfu(r, guided, cached.median / batch)} | "
                         f"{timings[f'Jacobi{suffix}'].rate(batch).format()} | "
                         f"{', '.join(map(str, r['iterations'][('Jacobi', guided)]))} | {naive_cells} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- --official-root


def import_official(root: Path):
    """The official ``transformer_flow`` module from ``root``."""
    if not (root / "transformer_flow.py").is_file():
        raise FileNotFoundError(f"--official-root {root}: transformer_flow.py not found (a checkout of "
                                f"apple/ml-tarflow)")
    if str(root) not in sys.path:
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
    return lines


def gemm_macs(event) -> int:
    """Multiply-accumulates of the matrix products a profiler event (grouped by input shape) stands for:
    ``addmm(bias, (M, K), (K, N))`` or ``mm((M, K), (K, N))``."""
    shapes = event.input_shapes[1:3] if event.key == "aten::addmm" else event.input_shapes[:2]
    (m, k), (_, n) = shapes
    return event.count * m * k * n


def op_profile(fn, calls: int = 3) -> dict:
    """``calls`` calls of ``fn`` under ``torch.profiler`` (after one untimed call): every operator's self time (the
    median over the calls, so that a call preempted by other work does not count), and the time and arithmetic rate
    of the linear layers' matrix products (``GEMM_OPS``, multiply-accumulates counted from the recorded shapes)."""
    fn()
    per_call: dict[str, list[float]] = {}
    for _ in range(calls):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as profiler:
            fn()
        seconds: dict[str, float] = {}
        for event in profiler.key_averages():
            seconds[event.key] = seconds.get(event.key, 0.0) + event.self_cpu_time_total / 1e6
        for op, t in seconds.items():
            per_call.setdefault(op, []).append(t)
    macs = sum(gemm_macs(event) for event in profiler.key_averages(group_by_input_shape=True)
               if event.key in GEMM_OPS)
    ops = {op: statistics.median(times + [0.0] * (calls - len(times))) for op, times in per_call.items()}
    gemm = sum(ops.get(op, 0.0) for op in GEMM_OPS)
    attention = sum(t for op, t in ops.items() if "scaled_dot_product" in op)
    return dict(total=sum(ops.values()), gemm=gemm, gemm_rate=macs / gemm if gemm else 0.0, attention=attention,
                ops=ops)


def official_variants(name: str, args: argparse.Namespace) -> dict:
    """The official TarFlow and nf's at one official configuration, from the same weights and on the same inputs:
    ``sampling[weight]``, the samplers (official, and nf's of ``OFFICIAL_SAMPLERS``) at guidance ``weight``, each
    with the largest difference of its samples from the official ones and its Jacobi iterations; ``training``, the
    AdamW steps of the official code and of nf's ``OFFICIAL_TRAINING`` variants (both without bf16 under
    ``--fp32-only``)."""
    device = torch.device(args.device)
    arguments, setup = official_configs(args.tiny)[name]
    official_module = import_official(args.official_root)
    torch.manual_seed(0)
    official = official_module.Model(**arguments)
    with torch.no_grad():  # a fresh model's output projections are zero: random ones make the blocks non-trivial
        for block in official.blocks:
            block.proj_out.weight.normal_(0.0, 1e-3)
    official = official.to(device).eval()
    ours = from_official_state_dict(official.state_dict(), arguments).to(device).eval()
    result = dict(params=sum(p.numel() for p in ours.parameters()), sampling={})

    n = setup.sample_batch
    num_tokens, token_dim = ours.prior.event_shape
    z = torch.randn(n, num_tokens, token_dim, device=device)
    labels = torch.randint(0, setup.num_classes, (n,), device=device)

    def nf_sampler(options: dict, bf16: bool, weight: float):
        def sample() -> torch.Tensor:
            with noise.use(noise.Replay([z])), common.autocast(device, bf16):
                return ours.sample(n, labels, guidance=weight, **options)
        return sample

    def official_sampler(weight: float):
        def sample() -> torch.Tensor:
            with torch.no_grad():
                return official.reverse(z.clone(), labels, guidance=weight)
        return sample

    samplers = common.without_bf16(OFFICIAL_SAMPLERS, args.fp32_only)
    for weight in (0.0, 2.0):
        variants = {"official": official_sampler(weight)}
        variants.update({variant: nf_sampler(options, bf16, weight) for variant, (options, bf16) in samplers.items()})
        reference = variants["official"]()
        errors, iterations = {}, {}
        for variant in samplers:
            errors[variant] = (variants[variant]() - reference).abs().max().item()
            iterations[variant] = ours.last_iterations
        result["sampling"][weight] = dict(variants=variants, errors=errors, iterations=iterations)

    x = torch.rand(setup.train_batch, *setup.image_shape, device=device) * 2 - 1
    train_labels = torch.randint(0, setup.num_classes, (setup.train_batch,), device=device)

    def adamw_step(flow, loss_fn, bf16: bool, fused: bool):
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
        latents, _, logdets = official(noisy, train_labels)
        return official.get_loss(latents, logdets)

    def nf_loss(noisy: torch.Tensor) -> torch.Tensor:
        return -ours.log_prob(noisy, train_labels).mean() / ours.num_dims

    steps = {"official": adamw_step(official, official_loss, False, False),
             "official, fused AdamW": adamw_step(official, official_loss, False, True)}
    steps.update({variant: adamw_step(ours, nf_loss, bf16, fused)
                  for variant, (fused, bf16) in common.without_bf16(OFFICIAL_TRAINING, args.fp32_only).items()})
    result["training"] = steps
    return result


def time_official(args: argparse.Namespace) -> list[dict]:
    """Every official configuration's samplers and training steps, each group timed taking turns (one process's
    share of the rounds: see ``common.time_in_processes``), with the samplers' errors and iterations."""
    device = torch.device(args.device)
    results = []
    for name in args.configs:
        pair = official_variants(name, args)
        sampling = {weight: dict(timings=common.time_variants(group.pop("variants"), args, device), **group)
                    for weight, group in pair["sampling"].items()}
        results.append(dict(name=name, params=pair["params"], sampling=sampling,
                            training=common.time_variants(pair["training"], args, device)))
        del pair
    return results


def profile_official(args: argparse.Namespace) -> dict[str, dict]:
    """Per configuration and task, :func:`op_profile` of the official code and of nf's fp32 variants."""
    profiles = {}
    for name in args.configs:
        pair = official_variants(name, args)
        tasks = {f"sampling, {'CFG 2.0' if weight else 'no guidance'}": {
            variant: op_profile(group["variants"][variant]) for variant in PROFILED_SAMPLERS}
            for weight, group in pair["sampling"].items()}
        tasks["training step"] = {variant: op_profile(pair["training"][variant]) for variant in PROFILED_TRAINING}
        profiles[name] = tasks
        del pair
    return profiles


def official_table(results: list[dict], tiny: bool) -> str:
    """Sampling and training: seconds per call, median (min-max over the samples), and the speed-up over the official
    code (ratio of the medians, min-max of the per-round ratios)."""
    lines = ["| config | params | task | batch | official s | nf variant | nf s | speed-up | "
             "max sample difference from official | Jacobi iterations per block |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        setup = official_configs(tiny)[r["name"]][1]
        head = f"{r['name']} ({'x'.join(map(str, setup.image_shape))}) | {r['params'] / 1e6:.2f} M"
        for weight, sampling_result in r["sampling"].items():
            timings = sampling_result["timings"]
            official = timings["official"].spread.format()
            for variant in sampling_result["errors"]:
                its = sampling_result["iterations"][variant]
                lines.append(
                    f"| {head} | sampling, {'CFG 2.0' if weight else 'no guidance'} | {setup.sample_batch} | "
                    f"{official} | {variant} | {timings[variant].spread.format()} | "
                    f"**{timings.speedup(variant, 'official').format(suffix='x')}** | "
                    f"{sampling_result['errors'][variant]:.1e} | {', '.join(map(str, its)) if any(its) else '-'} |")
        training = r["training"]
        for variant in (variant for variant in OFFICIAL_TRAINING if variant in training.variants):
            baseline = official_training_baseline(variant)
            lines.append(f"| {head} | training step | {setup.train_batch} | {training[baseline].spread.format()} | "
                         f"{variant} | {training[variant].spread.format()} | "
                         f"**{training.speedup(variant, baseline).format(suffix='x')}** | | |")
    return "\n".join(lines)


def profile_table(profiles: dict[str, dict]) -> str:
    """Where the time goes (``--profile``): per configuration and task, each profiled implementation's operator
    time, the share and arithmetic rate of the linear layers' matrix products, attention's share, the largest other
    operators, and, for nf, the speed-up over the official code that would remain if everything but nf's matrix
    products took no time."""
    lines = ["| config | task | implementation | profiled s | matrix products: share, GMAC/s | attention share | "
             "largest other operators (share) | speed-up bound: official s / nf matrix-product s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, tasks in profiles.items():
        for task, implementations in tasks.items():
            official = implementations["official"]["total"]
            for variant, p in implementations.items():
                others = sorted(((t, op) for op, t in p["ops"].items()
                                 if op not in GEMM_OPS and "scaled_dot_product" not in op), reverse=True)[:3]
                other_cells = ", ".join(f"`{op.removeprefix('aten::')}` {100 * t / p['total']:.0f}%"
                                        for t, op in others)
                bound = "" if variant == "official" else f"{official / p['gemm']:.2f}x"
                lines.append(f"| {name} | {task} | {'official' if variant == 'official' else 'nf ' + variant} | "
                             f"{p['total']:.3g} | {100 * p['gemm'] / p['total']:.0f}%, {p['gemm_rate'] / 1e9:.1f} | "
                             f"{100 * p['attention'] / p['total']:.0f}% | {other_cells} | {bound} |")
    return "\n".join(lines)


def main() -> int:
    parser = common.make_parser(__doc__.splitlines()[0], threads=None,
                                bf16_help="bf16 autocast of the Transformers (CUDA, or a CPU with native bf16)",
                                peak_tflops=True, fp32_only=True)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(SETUPS),
                        help="the configurations (default: %(default)s; with --official-root: small, medium)")
    parser.add_argument("--official-root", type=Path, default=None, metavar="PATH",
                        help="folder holding the official transformer_flow.py (apple/ml-tarflow): compare with it")
    parser.add_argument("--fixtures", type=Path, default=reference_fixture_dir(), metavar="DIR",
                        help="with --official-root: the reference fixtures the official code must reproduce "
                             "(default: %(default)s)")
    parser.add_argument("--profile", action="store_true",
                        help="with --official-root: after timing, profile one call of the official code and of "
                             "nf's fp32 variants (torch.profiler) and add where their time goes to the report")
    args = common.parse_args(parser)
    if args.official_root is None:
        stamp = common.Stamp("TarFlow benchmark", args)
        memory = common.run_alternating(training_memory,
                                        {name: (name, args.device, args.bf16, args.threads, args.tiny)
                                         for name in args.configs}, args.memory_rounds)
        peak = common.peak_flops(args.device, args.bf16, args.peak_tflops)
        results = common.time_in_processes(time_setups, args)
        common.write_report(args.output, f"{stamp.render()}\n{table(results, memory, args, peak)}\n")
        return 0

    if args.bf16:
        parser.error("--official-root measures nf in fp32 and in bf16 (or with --fp32-only in fp32); leave out --bf16")
    if not set(args.configs) <= set(OFFICIAL_CONFIGS):
        parser.error(f"--official-root compares the configurations {', '.join(OFFICIAL_CONFIGS)} only")
    root = args.official_root = args.official_root.resolve()
    if not (root / "transformer_flow.py").is_file():
        parser.error(f"--official-root {root}: transformer_flow.py not found (a checkout of apple/ml-tarflow)")
    if not any(args.fixtures.glob("tarflow_*.pt")):
        parser.error(f"--fixtures {args.fixtures}: no tarflow_*.pt reference fixtures there (the shared ones, or "
                     f"packages/nf-arch-tarflow/tests/fixtures)")
    stamp = common.Stamp("TarFlow: nf against the official implementation", args,
                         precision="official and nf in fp32 (--fp32-only)" if args.fp32_only else
                         "official in fp32, nf in fp32 and under bf16 autocast")
    checks = check_official(import_official(root), args.fixtures)
    results = common.time_in_processes(time_official, args)
    fixture_lines = "\n".join(f"- {line}" for line in checks)
    profile = ""
    if args.profile:
        profiles = common.call_in_fresh_process(common.run_with_threads, profile_official, args)
        profile = f"\n## Profile (torch.profiler, one call each)\n\n{profile_table(profiles)}\n"
    common.write_report(args.output, f"{stamp.render()}\nThe official code reproduces the reference fixtures (largest "
                                     f"differences):\n\n{fixture_lines}\n\n{official_table(results, args.tiny)}\n"
                                     f"{profile}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
