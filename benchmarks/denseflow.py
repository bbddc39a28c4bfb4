"""DenseFlow speed: training steps/s and peak memory, sampling images/s, and the K-sample likelihood evaluation.

For a small (digits, 1x8x8) and a CIFAR-sized (DenseFlow-74-10, 3x32x32) configuration this prints one Markdown
table (and writes it to ``--output``):

* training: AdamW steps per second (fused AdamW, as ``nf train``) on random integer images (variational
  dequantization included), and the peak memory of a step (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the rise
  of the process's peak resident set), in a fresh process per configuration;
* sampling: images per second of ``flow.sample`` in eval mode;
* evaluation: seconds per image of the importance-weighted estimate over ``K`` draws of all the noise
  (``nfkit_core.importance_weighted_log_prob``, ``sample_batch_size`` draws per forward pass);
* on CUDA (or with ``--peak-tflops``), model FLOPs utilisation of training and sampling: FLOPs counted by
  ``torch.utils.flop_counter`` (convolutions and matrix products) over the data sheet's peak.

With ``--official-root PATH`` it instead compares nf's DenseFlow with the official implementation
(matejgrcic/DenseFlow, built on didriknielsen/survae_flows) at the official constructor arguments: ``small`` is the
reference fixture's configuration (3x16x16, blocks [2, 2, 1], modules [1, 1, 2], 8 channels, growth 4) with the
official weights recorded in the fixture (``--fixture``; a missing file is an error), ``cifar`` is DenseFlow-74-10
(3x32x32, blocks [6, 4, 1], modules [5, 6, 20], 48 channels, growth 10), fresh and ActNorm-initialised on the batch;
both without gradient checkpointing (the official training script's default). nf's model is loaded from the official
model's state dict (``nfkit_denseflow.from_official_state_dict``), so both compute the same function of the same
weights on the same inputs, with the same threads and batches. The variants, timed taking turns: the official code in
fp32, nf in fp32 and nf under bf16 autocast, all three with the official training script's optimizer
(``torch.optim.AdamW`` with PyTorch's per-tensor loop); and, as rows of their own, the official code and nf in fp32
with the fused AdamW that nf's Trainer uses, which shows the optimizer's own gain on either side. Timed: AdamW steps
on the training loss (bits/dim of the single-sample bound), ``sample`` in eval mode, and the K-sample
importance-weighted bound the way the official ``eval_loglik.py`` computes it (``denseflow.utils.iwbo_batched`` under
``torch.no_grad``: K/kbs passes over the batch repeated kbs times). The peak memory of a training step is measured
for every variant in fresh processes, the variants taking turns. A second table gives the largest change of
bits/dim that bf16 autocast causes, for nf and for the official code under the same autocast, with the same noise
draws. ``--fp32-only`` leaves out nf's bf16 variant and that table: on a CPU without native bf16 arithmetic, bf16
autocast times oneDNN's emulation. Before timing, the official code runs on the reference fixture with the
fixture's noise draws replayed, and the report says how far its outputs lie from the recorded ones. ``PATH`` must
hold the two checkouts::

    PATH/DenseFlow/experiments/image/model/dense_flow.py   (the official model, imported as model.dense_flow)
    PATH/DenseFlow/denseflow/...                           (the repository's survae fork)
    PATH/survae_flows/survae/...                           (didriknielsen/survae_flows)

The official code is third-party and is never part of this repository. Timing follows the method of ``common.py``
(benchmarks/README.md).

Usage::

    python benchmarks/denseflow.py --threads 1       # CPU, fp32, prints the table
    python benchmarks/denseflow.py --threads 1 --output benchmarks/results/denseflow_cpu.md
    python benchmarks/denseflow.py --device cuda --bf16 --output benchmarks/results/denseflow_h100_bf16.md
    python benchmarks/denseflow.py --official-root /tmp/official --threads 1 \\
        --fixture ../shared/fixtures/reference/denseflow_small.pt \\
        --output benchmarks/results/denseflow_vs_official_cpu.md
    python benchmarks/denseflow.py --official-root /tmp/official --threads 1 --fp32-only   # a CPU emulating bf16
    python benchmarks/denseflow.py --tiny            # a seconds-long check that the script works
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import common
import torch
from torch.utils.flop_counter import FlopCounterMode

from nfkit_core import importance_weighted_log_prob
from nfkit_core.plugins import DataInfo
from nfkit_core.testing.fixtures import reference_fixture_dir
from nfkit_denseflow import PRESETS, DenseFlowConfig, build_denseflow, from_official_state_dict


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
# --tiny: a tiny stand-in for every setup, to check that the script works.
TINY_SETUPS = {name: Setup("digits-tiny", DataInfo((1, 8, 8), num_bins=17), train_batch=4, sample_batch=2,
                           eval_images=1, eval_samples=4, eval_sample_batch=2) for name in SETUPS}


# The official constructor arguments compared with ``--official-root``, and the batch sizes used for them.
OFFICIAL_CONFIGS = {
    "small": dict(data_shape=(3, 16, 16), block_config=[2, 2, 1], layers_config=[1, 1, 2], layer_mid_chnls=[8, 8, 8],
                  growth_rate=4),
    "cifar": dict(data_shape=(3, 32, 32), block_config=[6, 4, 1], layers_config=[5, 6, 20],
                  layer_mid_chnls=[48, 48, 48], growth_rate=10),
}
OFFICIAL_SETUPS = {
    "small": Setup("official fixture config", DataInfo((3, 16, 16), num_bins=256), train_batch=16, sample_batch=16,
                   eval_images=2, eval_samples=16, eval_sample_batch=8),
    "cifar": Setup("DenseFlow-74-10", DataInfo((3, 32, 32), num_bins=256), train_batch=4, sample_batch=4,
                   eval_images=1, eval_samples=8, eval_sample_batch=4),
}
# --tiny: the fixture's configuration with tiny batches for both, 'cifar' with fresh weights.
TINY_OFFICIAL_SETUPS = {name: Setup(f"tiny stand-in, the official fixture config{'' if name == 'small' else ', fresh'}",
                                    DataInfo((3, 16, 16), num_bins=256), train_batch=2, sample_batch=2, eval_images=1,
                                    eval_samples=4, eval_sample_batch=2) for name in OFFICIAL_SETUPS}


def official_setup(name: str, tiny: bool) -> tuple[Setup, dict]:
    """The batch sizes and the official constructor arguments of comparison ``name``."""
    if tiny:
        return TINY_OFFICIAL_SETUPS[name], OFFICIAL_CONFIGS["small"]
    return OFFICIAL_SETUPS[name], OFFICIAL_CONFIGS[name]


def levels(setup: Setup, batch: int, device: torch.device) -> torch.Tensor:
    return torch.randint(0, setup.data.num_bins, (batch, *setup.data.shape), device=device).float()


def adamw(flow: torch.nn.Module, fused: bool) -> torch.optim.AdamW:
    """AdamW with the fused kernel (nf's Trainer) or with PyTorch's default per-tensor loop (the official script)."""
    return torch.optim.AdamW(flow.parameters(), lr=1e-4, fused=fused)


def training_step(flow, loss_fn, x: torch.Tensor, device: torch.device, bf16: bool, fused: bool):
    """One AdamW step on ``loss_fn(flow, x)``, the loss under bf16 autocast when ``bf16``."""
    optimizer = adamw(flow, fused)

    def step() -> None:
        flow.train()
        with common.autocast(device, bf16):
            loss = loss_fn(flow, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def nf_bits_per_dim(flow, x: torch.Tensor) -> torch.Tensor:
    """nf's training loss: the mean bits/dim of the single-sample bound."""
    return flow.bits_per_dim(x).mean()


def evaluation(flow, x: torch.Tensor, setup: Setup, device: torch.device, bf16: bool):
    """The K-sample importance-weighted log-likelihood of ``x``, as a function of no arguments."""
    generator = torch.Generator(device=device).manual_seed(0)

    def evaluate() -> None:
        flow.eval()
        with torch.no_grad(), common.autocast(device, bf16):
            importance_weighted_log_prob(flow, x, num_samples=setup.eval_samples,
                                         sample_batch_size=setup.eval_sample_batch, noise=generator)
    return evaluate


def sampling(flow, setup: Setup, device: torch.device, bf16: bool):
    """``flow.sample`` of a batch in eval mode, as a function of no arguments."""
    generator = torch.Generator(device=device).manual_seed(0)

    def sample() -> None:
        flow.eval()
        with torch.no_grad(), common.autocast(device, bf16):
            flow.sample(setup.sample_batch, generator=generator)
    return sample


def setups(tiny: bool) -> dict[str, Setup]:
    return TINY_SETUPS if tiny else SETUPS


def build_nf(name: str, device: torch.device, tiny: bool):
    setup = setups(tiny)[name]
    torch.manual_seed(0)
    config = DenseFlowConfig(**PRESETS[setup.preset])
    return setup, build_denseflow(config, setup.data).to(device)


def nf_training_memory(name: str, device_name: str, bf16: bool, threads: int, tiny: bool) -> float:
    """Peak memory (MiB) of one training step of a setup, after an untimed one (run in a fresh process)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    setup, flow = build_nf(name, device, tiny)
    step = training_step(flow, nf_bits_per_dim, levels(setup, setup.train_batch, device), device, bf16, fused=True)
    step()  # initialises ActNorm, allocates the gradients and the optimizer's state
    with common.PeakMemory(device) as memory:
        step()
    return memory.mib


def time_nf(args) -> list[dict]:
    """Every configuration's training steps, sampling calls and evaluations, timed taking turns (one process's share
    of the rounds: see ``common.time_in_processes``), with its parameter count and, where there is a peak for the MFU
    columns, the model FLOPs of a training step and of a sampling call (``torch.utils.flop_counter``: convolutions and
    matrix products)."""
    device = torch.device(args.device)
    count_flops = common.peak_flops(args.device, args.bf16, args.peak_tflops) is not None
    results = []
    for name in args.configs:
        setup, flow = build_nf(name, device, args.tiny)
        step = training_step(flow, nf_bits_per_dim, levels(setup, setup.train_batch, device), device, args.bf16,
                             fused=True)
        step()  # initialises ActNorm before sampling and evaluation run
        x = levels(setup, setup.eval_images, device)
        sample = sampling(flow, setup, device, args.bf16)
        timings = common.time_variants({"train": step, "sample": sample,
                                        "eval": evaluation(flow, x, setup, device, args.bf16)}, args, device)
        flops = {}
        if count_flops:
            for task, fn in (("train", step), ("sample", sample)):
                with FlopCounterMode(display=False) as counter:
                    fn()
                flops[task] = float(counter.get_total_flops())
        results.append(dict(name=name, params=sum(p.numel() for p in flow.parameters()), flops=flops,
                            timings=timings))
    return results


def import_official(root: Path):
    """The official ``DenseFlow`` class and ``iwbo_batched`` from the checkouts under ``root``."""
    model_file = root / "DenseFlow" / "experiments" / "image" / "model" / "dense_flow.py"
    if not model_file.is_file():
        raise FileNotFoundError(f"--official-root {root}: {model_file} not found (see this script's docstring)")
    sys.path[:0] = [path for path in (str(root / "DenseFlow"), str(model_file.parents[1]), str(root / "survae_flows"))
                    if path not in sys.path]
    from denseflow.utils import iwbo_batched
    from model.dense_flow import DenseFlow as OfficialDenseFlow
    return OfficialDenseFlow, iwbo_batched


def official_bits_per_dim(flow, x: torch.Tensor) -> torch.Tensor:
    """The official training loss (``denseflow.utils.elbo_bpd``)."""
    return -flow.log_prob(x).sum() / (math.log(2) * x.numel())


def check_fixture(fixture: Path, config: dict) -> None:
    """Fail unless ``fixture`` holds official weights of ``config`` (the 'small' comparison runs on them)."""
    if not fixture.is_file():
        raise FileNotFoundError(
            f"--fixture {fixture}: not found. The 'small' comparison runs on the official weights recorded in the "
            "reference fixture denseflow_small.pt: pass --fixture FILE (or set NF_REFERENCE_FIXTURES), or leave "
            "'small' out of --configs")
    recorded = torch.load(fixture, map_location="cpu", weights_only=False)
    if recorded.get("config") != config:
        raise ValueError(f"--fixture {fixture}: its config {recorded.get('config')} is not the 'small' comparison's "
                         f"{config}")


@contextlib.contextmanager
def replayed_normal_draws(draws: list[torch.Tensor]):
    """Within the block, the official code's standard-normal draws are ``draws``, in order: it draws with
    ``torch.randn`` and, in its cross-unit coupling, with ``torch.distributions.Normal(0, 1).sample``, which calls
    ``torch.normal(0, 1)``. A draw of another shape than the recorded one is an error."""
    queue = iter(draws)

    def next_draw(size: torch.Size) -> torch.Tensor:
        draw = next(queue)
        if draw.shape != size:
            raise ValueError(f"the official code drew noise of shape {tuple(size)} where the fixture recorded "
                             f"{tuple(draw.shape)}: it is not the code that recorded the fixture")
        return draw.clone()

    def randn(*size, **_) -> torch.Tensor:
        return next_draw(torch.Size(size[0] if len(size) == 1 and not isinstance(size[0], int) else size))

    def normal(mean: torch.Tensor, std: torch.Tensor, *_, **__) -> torch.Tensor:
        return mean + std * next_draw(std.shape)

    with mock.patch.object(torch, "randn", randn), mock.patch.object(torch, "normal", normal):
        yield


def check_official(OfficialDenseFlow, fixture: Path) -> str:
    """The official code on the reference fixture, with the fixture's noise draws replayed: the largest difference
    of its ``log_prob`` from the recorded one and how many pixels of its ``sample(3)`` differ from the recorded
    images."""
    recorded = torch.load(fixture, map_location="cpu", weights_only=False)
    model = OfficialDenseFlow(**recorded["config"], checkpointing=False)
    model.load_state_dict(recorded["state_dict"])
    model.eval()
    with torch.no_grad():
        with replayed_normal_draws(recorded["log_prob_noise"]):
            log_prob = model.log_prob(recorded["x"])
        with replayed_normal_draws(recorded["sample_noise"]):
            samples = model.sample(len(recorded["samples"]))
    return (f"`{fixture.name}`: `log_prob` of its {len(log_prob)} images "
            f"{(log_prob - recorded['log_prob']).abs().max().item():.1e} nats (of "
            f"{recorded['log_prob'].abs().max().item():,.0f}), `sample({len(samples)})` "
            f"{(samples != recorded['samples']).sum().item()} of {samples.numel():,} pixels differ")


def official_models(OfficialDenseFlow, name: str, config: dict, fixture: Path, x: torch.Tensor,
                    device: torch.device):
    """The official model of configuration ``name`` and nf's copy of it: for 'small' the reference fixture's weights,
    for 'cifar' (no official weights exist at that size on this machine) a fresh model after the official
    data-dependent ActNorm initialisation on ``x``. Returns (official, nf, where the weights come from)."""
    torch.manual_seed(0)
    official = OfficialDenseFlow(**config, checkpointing=False)
    if name == "small":
        official.load_state_dict(torch.load(fixture, map_location="cpu", weights_only=False)["state_dict"])
        official, weights = official.to(device), "reference fixture"
    else:
        official = official.to(device)
        with torch.no_grad():
            official.train()
            official.log_prob(x)
        weights = "fresh, ActNorm initialised"
    ours = from_official_state_dict(official.state_dict(), config).to(device)
    return official.eval(), ours.eval(), weights


# The timed variants of the comparison: (implementation, fused AdamW, bf16 autocast). The first three are the
# comparison at equal settings (the official training script's AdamW, PyTorch's per-tensor loop, for all); the fused
# rows show what the fused optimizer (nf's Trainer's default, open to the official code too) adds on each side.
OFFICIAL_VARIANTS = {"official": ("official", False, False), "nf fp32": ("nf", False, False),
                     "nf bf16": ("nf", False, True), "official, fused AdamW": ("official", True, False),
                     "nf fp32, fused AdamW": ("nf", True, False)}
SAME_OPTIMIZER = ["official", "nf fp32", "nf bf16"]


def official_training_steps(official, ours, x: torch.Tensor, device: torch.device, variants) -> dict:
    return {variant: training_step(official if impl == "official" else ours,
                                   official_bits_per_dim if impl == "official" else nf_bits_per_dim, x, device, bf16,
                                   fused)
            for variant, (impl, fused, bf16) in variants.items()}


def official_training_memory(name: str, variant: str, device_name: str, threads: int, root: Path, fixture: Path,
                             tiny: bool) -> float:
    """Peak memory (MiB) of one training step of ``variant`` after an untimed one (run in a fresh process)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    setup, config = official_setup(name, tiny)
    OfficialDenseFlow, _ = import_official(root)
    torch.manual_seed(0)
    x = levels(setup, setup.train_batch, device)
    official, ours, _ = official_models(OfficialDenseFlow, name, config, fixture, x, device)
    step = official_training_steps(official, ours, x, device, {variant: OFFICIAL_VARIANTS[variant]})[variant]
    step()
    with common.PeakMemory(device) as memory:
        step()
    return memory.mib


def bf16_error(log_prob, x: torch.Tensor, device: torch.device, num_dims: int) -> float:
    """Largest |bits/dim under bf16 autocast - bits/dim in fp32| over ``x``, with the same noise draws in both
    (``log_prob(x)`` must seed its own draws)."""
    with torch.no_grad():
        fp32 = log_prob(x)
        with common.autocast(device, True):
            bf16 = log_prob(x)
    return ((bf16 - fp32).abs().max() / (num_dims * math.log(2))).item()


def time_official(args) -> list[dict]:
    """:func:`measure_official` of every configuration (one process's share of the rounds: see
    ``common.time_in_processes``)."""
    OfficialDenseFlow, iwbo_batched = import_official(args.official_root)
    return [measure_official(name, args, iwbo_batched, OfficialDenseFlow) for name in args.configs]


def measure_official(name: str, args, iwbo_batched, OfficialDenseFlow) -> dict:
    """The official DenseFlow and nf's, from the same weights and on the same inputs, at one official configuration:
    training (every variant of ``OFFICIAL_VARIANTS``), sampling and K-sample evaluation (official fp32, nf fp32, nf
    bf16), timed taking turns, and how far bf16 autocast moves each one's bits/dim; with ``--fp32-only`` neither nf's
    bf16 variant nor the bf16 change."""
    device = torch.device(args.device)
    setup, config = official_setup(name, args.tiny)
    torch.manual_seed(0)
    x = levels(setup, setup.train_batch, device)
    official, ours, weights = official_models(OfficialDenseFlow, name, config, args.fixture, x, device)
    num_dims = math.prod(setup.data.shape)
    result = dict(name=name, weights=weights, params=sum(p.numel() for p in ours.parameters()),
                  official_params=sum(p.numel() for p in official.parameters()))

    def seeded_official_log_prob(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)
        return official.log_prob(x)

    if not args.fp32_only:
        result["official_bf16_error"] = bf16_error(seeded_official_log_prob, x, device, num_dims)
        result["bf16_error"] = bf16_error(
            lambda x: ours.log_prob(x, noise=torch.Generator(device=device).manual_seed(1)), x, device, num_dims)

    variants = common.without_bf16(OFFICIAL_VARIANTS, args.fp32_only)
    result["train"] = common.time_variants(official_training_steps(official, ours, x, device, variants), args, device)
    n, k, kbs = setup.sample_batch, setup.eval_samples, setup.eval_sample_batch
    generator = torch.Generator(device=device).manual_seed(0)
    x_eval = levels(setup, setup.eval_images, device)

    def without_autograd(official_fn, nf_fn) -> dict:
        """``official_fn`` in fp32 and ``nf_fn`` in fp32 and under bf16 autocast, each without autograd."""
        def call(variant: str) -> None:
            impl, _, bf16 = OFFICIAL_VARIANTS[variant]
            official.eval()
            ours.eval()
            with torch.no_grad(), common.autocast(device, bf16):
                (official_fn if impl == "official" else nf_fn)()
        return {variant: functools.partial(call, variant) for variant in SAME_OPTIMIZER if variant in variants}

    result["sample"] = common.time_variants(
        without_autograd(lambda: official.sample(n), lambda: ours.sample(n, generator=generator)), args, device)
    result["eval"] = common.time_variants(
        without_autograd(lambda: iwbo_batched(official, x_eval, k, kbs),
                         lambda: importance_weighted_log_prob(ours, x_eval, num_samples=k, sample_batch_size=kbs,
                                                              noise=generator)), args, device)
    return result


def official_table(results: list[dict], tiny: bool) -> str:
    """Speed: the official code and nf, each variant a row; speed-ups are over the official code at equal settings."""
    lines = ["| config | image | params (nf / official) | variant | AdamW | train steps/s | train MiB | "
             "train speed-up | fused AdamW's gain | sampling img/s | sampling speed-up | K-sample eval s/image | "
             "eval speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = official_setup(r["name"], tiny)[0]
        lines.append(f"| {r['name']} ({s.preset}) | {'x'.join(map(str, s.data.shape))} | "
                     f"{r['params'] / 1e6:.2f} M / {r['official_params'] / 1e6:.2f} M | batches: train "
                     f"{s.train_batch}, sample {s.sample_batch}, eval {s.eval_images} image(s), K = {s.eval_samples} "
                     f"in passes of {s.eval_sample_batch} | | | | | | | | | |")
        train = r["train"]
        for variant in train.variants:
            impl, fused, bf16 = OFFICIAL_VARIANTS[variant]
            baseline = "official, fused AdamW" if fused else "official"
            unfused = next(v for v, spec in OFFICIAL_VARIANTS.items() if spec == (impl, False, bf16))
            row = (f"| | | | {variant} | {'fused' if fused else 'per-tensor loop'} | "
                   f"{train[variant].rate().format()} | {statistics.median(r['memory'][variant]):.0f} | "
                   f"{'baseline' if variant == baseline else train.speedup(variant, baseline).format(suffix='x')} | "
                   f"{train.speedup(variant, unfused).format(suffix='x') if fused else ''} |")
            if variant in SAME_OPTIMIZER:  # sampling and evaluation use no optimizer
                sample, evaluate = r["sample"], r["eval"]
                eval_seconds = common.Spread.of([t / s.eval_images for t in evaluate[variant].seconds])
                sample_speedup, eval_speedup = (
                    ("baseline", "baseline") if variant == baseline else
                    (sample.speedup(variant, baseline).format(suffix="x"),
                     evaluate.speedup(variant, baseline).format(suffix="x")))
                row += (f" {sample[variant].rate(s.sample_batch).format()} | {sample_speedup} | "
                        f"{eval_seconds.format()} | {eval_speedup} |")
            else:
                row += " | | | |"
            lines.append(row)
    return "\n".join(lines)


def accuracy_table(results: list[dict], tiny: bool) -> str:
    """What bf16 autocast does to the likelihood: nf's and the official code run under the same autocast."""
    lines = ["| config | weights | largest bits/dim change under bf16 autocast: nf | official |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} ({official_setup(r['name'], tiny)[0].preset}) | {r['weights']} | "
                     f"{r['bf16_error']:.2g} | "
                     f"{r['official_bf16_error']:.2g} |")
    return "\n".join(lines)


def table(results: list[dict], memory: dict[str, list[float]], args, peak: float | None = None) -> str:
    """Speed of nf's DenseFlow, a row per configuration."""
    kind = common.PeakMemory.kind(args.device)
    lines = [f"| config | image | params | train batch | train steps/s | train memory ({kind}, MiB) | "
             f"sample batch | sampling img/s | K | draws per pass | K-sample eval, s/image | train MFU | "
             f"sampling MFU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, timings = setups(args.tiny)[r["name"]], r["timings"]
        eval_s_per_image = common.Spread.of([t / s.eval_images for t in timings["eval"].seconds])
        lines.append(f"| {r['name']} ({s.preset}) | {'x'.join(map(str, s.data.shape))} | {r['params'] / 1e6:.2f} M | "
                     f"{s.train_batch} | {timings['train'].rate().format()} | "
                     f"{statistics.median(memory[r['name']]):.0f} | {s.sample_batch} | "
                     f"{timings['sample'].rate(s.sample_batch).format()} | {s.eval_samples} | {s.eval_sample_batch} | "
                     f"{eval_s_per_image.format()} | "
                     f"{common.mfu(r['flops'].get('train', 0.0), timings['train'].spread.median, peak)} | "
                     f"{common.mfu(r['flops'].get('sample', 0.0), timings['sample'].spread.median, peak)} |")
    return "\n".join(lines)


def main() -> int:
    parser = common.make_parser(__doc__.splitlines()[0], output_help="Markdown file for the tables",
                                bf16_help="bf16 autocast (CUDA, or a CPU with native bf16)", peak_tflops=True,
                                fp32_only=True)
    parser.add_argument("--configs", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--official-root", type=Path, default=None, metavar="PATH",
                        help="folder holding the official DenseFlow and survae_flows checkouts: compare with them")
    parser.add_argument("--fixture", type=Path, default=reference_fixture_dir() / "denseflow_small.pt",
                        metavar="FILE",
                        help="with --official-root: the reference fixture with the official weights that the 'small' "
                             "comparison runs on; it must exist (default: %(default)s)")
    args = common.parse_args(parser)
    if args.official_root is None:
        stamp = common.Stamp("DenseFlow benchmark", args)
        jobs = {name: (name, args.device, args.bf16, args.threads, args.tiny) for name in args.configs}
        memory = common.run_alternating(nf_training_memory, jobs, args.memory_rounds,
                                        fresh_process=args.device == "cpu")
        peak = common.peak_flops(args.device, args.bf16, args.peak_tflops)
        results = common.time_in_processes(time_nf, args)
        report = (f"{stamp.render(['optimizer: fused AdamW (as nf train)'])}\n"
                  f"{table(results, memory, args, peak)}\n")
        common.write_report(args.output, report)
        return 0
    if args.bf16:
        parser.error("--official-root measures nf in fp32 and in bf16 (or with --fp32-only in fp32); leave out --bf16")
    root = args.official_root = args.official_root.resolve()
    try:
        if "small" in args.configs:
            check_fixture(args.fixture, OFFICIAL_CONFIGS["small"])
        OfficialDenseFlow, _ = import_official(root)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    reproduced = (f"The official code reproduces the reference fixture (largest differences, its noise replayed): "
                  f"{check_official(OfficialDenseFlow, args.fixture)}\n\n" if "small" in args.configs else "")
    stamp = common.Stamp("DenseFlow: nf against the official implementation", args,
                         precision="official and nf in fp32 (--fp32-only)" if args.fp32_only else
                         "official in fp32; nf in fp32 and under bf16 autocast")
    memory = {name: common.run_alternating(
        official_training_memory,
        {variant: (name, variant, args.device, args.threads, root, args.fixture, args.tiny)
         for variant in common.without_bf16(OFFICIAL_VARIANTS, args.fp32_only)},
        args.memory_rounds, fresh_process=args.device == "cpu")
        for name in args.configs}
    results = [{**timed, "memory": memory[timed["name"]]}
               for timed in common.time_in_processes(time_official, args)]
    speedups = ("speed-ups: over the official code with the same optimizer (per-tensor AdamW, the official script's, "
                "or both fused); fused AdamW's gain: over the same implementation and precision with the per-tensor "
                "loop; train MiB: peak memory rise of a training step")
    accuracy = "" if args.fp32_only else f"\n{accuracy_table(results, args.tiny)}\n"
    report = f"{stamp.render([speedups])}\n{reproduced}{official_table(results, args.tiny)}\n{accuracy}"
    common.write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
