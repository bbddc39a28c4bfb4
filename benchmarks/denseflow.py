"""DenseFlow speed: training steps/s and peak memory, sampling images/s, and the K-sample likelihood evaluation.

For a small (digits, 1x8x8) and a CIFAR-sized (DenseFlow-74-10, 3x32x32) configuration this prints one Markdown
table (and writes it to ``--output``):

* training: AdamW steps per second on random integer images (variational dequantization included), and the peak
  memory of the step (CUDA: ``torch.cuda.max_memory_allocated``; CPU: growth of the process's peak resident set,
  measured in a fresh process per configuration);
* sampling: images per second of ``flow.sample`` in eval mode;
* evaluation: seconds per image of the importance-weighted estimate over ``K`` draws of all the noise
  (``nfkit_core.importance_weighted_log_prob``, ``sample_batch_size`` draws per forward pass).

With ``--official-root PATH`` it instead compares nf's DenseFlow with the official implementation
(matejgrcic/DenseFlow, built on didriknielsen/survae_flows) at the official constructor arguments: ``small`` is the
reference fixture's configuration (3x16x16, blocks [2, 2, 1], modules [1, 1, 2], 8 channels, growth 4) with the
fixture's weights where ``--fixture`` exists, ``cifar`` is DenseFlow-74-10 (3x32x32, blocks [6, 4, 1], modules
[5, 6, 20], 48 channels, growth 10), fresh and ActNorm-initialised on the batch; both without gradient checkpointing
(the official training script's default). nf's model is loaded from the official model's state dict
(``nfkit_denseflow.from_official_state_dict``), so both compute the same function of the same weights on the same
inputs. Three variants are timed, taking turns (``--repeats`` rounds, the best round of each reported): the official
code as its scripts run it (fp32; ``torch.optim.AdamW`` with its per-tensor loop, the official default), nf in fp32
and nf under bf16 autocast (both with the fused AdamW of nf's Trainer). Timed: AdamW steps on the training loss
(bits/dim of the single-sample bound), ``sample`` in eval mode, and the K-sample importance-weighted bound the way the
official ``eval_loglik.py`` computes it (``denseflow.utils.iwbo_batched`` under ``torch.no_grad``: K/kbs passes over
the batch repeated kbs times). A second table gives the largest change of bits/dim that bf16 autocast causes, for nf
and for the official code under the same autocast, with the same noise draws. Peak memory is not compared (all
variants share one process). ``PATH`` must hold the two checkouts::

    PATH/DenseFlow/experiments/image/model/dense_flow.py   (the official model, imported as model.dense_flow)
    PATH/DenseFlow/denseflow/...                           (the repository's survae fork)
    PATH/survae_flows/survae/...                           (didriknielsen/survae_flows)

The official code is third-party and is never part of this repository.

Usage::

    python benchmarks/denseflow.py                   # CPU, fp32, prints the table
    python benchmarks/denseflow.py --output benchmarks/results/denseflow_cpu.md
    python benchmarks/denseflow.py --device cuda --bf16 --output benchmarks/results/denseflow_h100_bf16.md
    python benchmarks/denseflow.py --official-root /tmp/official --threads 1 \\
        --output benchmarks/results/denseflow_vs_official_cpu.md
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import common
import torch

from nfkit_core import importance_weighted_log_prob
from nfkit_core.plugins import DataInfo
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


# The official constructor arguments compared with ``--official-root``, and the batch sizes used for them.
OFFICIAL_CONFIGS = {
    "small": dict(data_shape=(3, 16, 16), block_config=[2, 2, 1], layers_config=[1, 1, 2], layer_mid_chnls=[8, 8, 8],
                  growth_rate=4),
    "cifar": dict(data_shape=(3, 32, 32), block_config=[6, 4, 1], layers_config=[5, 6, 20],
                  layer_mid_chnls=[48, 48, 48], growth_rate=10),
}
DEFAULT_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference" / "denseflow_small.pt"
OFFICIAL_SETUPS = {
    "small": Setup("official fixture config", DataInfo((3, 16, 16), num_bins=256), train_batch=16, sample_batch=16,
                   eval_images=2, eval_samples=16, eval_sample_batch=8),
    "cifar": Setup("DenseFlow-74-10", DataInfo((3, 32, 32), num_bins=256), train_batch=4, sample_batch=4,
                   eval_images=1, eval_samples=8, eval_sample_batch=4),
}


def levels(setup: Setup, batch: int, device: torch.device) -> torch.Tensor:
    return torch.randint(0, setup.data.num_bins, (batch, *setup.data.shape), device=device).float()


def measure_training(flow, setup: Setup, device: torch.device, bf16: bool, steps: int) -> tuple[float, float]:
    """Steps per second and peak memory (MiB) of AdamW training steps."""
    step = training_step(flow, nf_bits_per_dim, levels(setup, setup.train_batch, device), device, bf16, fused=True)
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
        importance_weighted_log_prob(flow, x, num_samples=num_samples, sample_batch_size=setup.eval_sample_batch,
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


def import_official(root: Path):
    """The official ``DenseFlow`` class and ``iwbo_batched`` from the checkouts under ``root``."""
    model_file = root / "DenseFlow" / "experiments" / "image" / "model" / "dense_flow.py"
    if not model_file.is_file():
        raise FileNotFoundError(f"--official-root {root}: {model_file} not found (see this script's docstring)")
    sys.path[:0] = [str(root / "DenseFlow"), str(model_file.parents[1]), str(root / "survae_flows")]
    from denseflow.utils import iwbo_batched
    from model.dense_flow import DenseFlow as OfficialDenseFlow
    return OfficialDenseFlow, iwbo_batched


def adamw(flow: torch.nn.Module, fused: bool) -> torch.optim.AdamW:
    """AdamW as nf's Trainer builds it (``fused``) or as the official training script does (the per-tensor loop)."""
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


def official_bits_per_dim(flow, x: torch.Tensor) -> torch.Tensor:
    """The official training loss (``denseflow.utils.elbo_bpd``)."""
    return -flow.log_prob(x).sum() / (math.log(2) * x.numel())


def official_model(OfficialDenseFlow, name: str, fixture: Path | None, x: torch.Tensor, device: torch.device):
    """The official model of configuration ``name``: the reference fixture's weights where they fit, else a fresh one
    after the official data-dependent ActNorm initialisation on ``x``."""
    official = OfficialDenseFlow(**OFFICIAL_CONFIGS[name], checkpointing=False)
    if fixture is not None and fixture.is_file():
        recorded = torch.load(fixture, map_location="cpu", weights_only=False)
        if recorded["config"] == OFFICIAL_CONFIGS[name]:
            official.load_state_dict(recorded["state_dict"])
            return official.to(device).eval(), "reference fixture"
    official = official.to(device)
    with torch.no_grad():
        official.train()
        official.log_prob(x)
    return official.eval(), "fresh, ActNorm initialised"


def bf16_error(log_prob, x: torch.Tensor, device: torch.device, num_dims: int) -> float:
    """Largest |bits/dim under bf16 autocast - bits/dim in fp32| over ``x``, with the same noise draws in both
    (``log_prob(x)`` must seed its own draws)."""
    with torch.no_grad():
        fp32 = log_prob(x)
        with common.autocast(device, True):
            bf16 = log_prob(x)
    return ((bf16 - fp32).abs().max() / (num_dims * math.log(2))).item()


def run_official_setup(name: str, device_name: str, train_steps: int, repeats: int, threads: int,
                       root: Path, fixture: Path | None) -> dict:
    """The official DenseFlow (fp32, as its scripts run it) and nf's (fp32 and bf16 autocast) at one official
    configuration, from the same weights and on the same inputs."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    setup = OFFICIAL_SETUPS[name]
    OfficialDenseFlow, iwbo_batched = import_official(root)
    torch.manual_seed(0)
    x = levels(setup, setup.train_batch, device)
    official, weights = official_model(OfficialDenseFlow, name, fixture, x, device)
    ours = from_official_state_dict(official.state_dict(), OFFICIAL_CONFIGS[name]).to(device).eval()
    num_dims = math.prod(setup.data.shape)
    result = dict(name=name, setup=setup, weights=weights, params=sum(p.numel() for p in ours.parameters()),
                  official_params=sum(p.numel() for p in official.parameters()))

    def seeded_official_log_prob(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)
        return official.log_prob(x)

    result["official_bf16_error"] = bf16_error(seeded_official_log_prob, x, device, num_dims)
    result["bf16_error"] = bf16_error(
        lambda x: ours.log_prob(x, noise=torch.Generator(device=device).manual_seed(1)), x, device, num_dims)

    variants = {"official": (official, False), "fp32": (ours, False), "bf16": (ours, True)}
    seconds = common.best_seconds_per_call(
        {name: training_step(flow, official_bits_per_dim if name == "official" else nf_bits_per_dim, x, device,
                             bf16, fused=name != "official")
         for name, (flow, bf16) in variants.items()}, device, train_steps, repeats)
    official.eval()
    ours.eval()
    result["steps_per_s"] = {name: 1 / s for name, s in seconds.items()}

    n = setup.sample_batch
    generator = torch.Generator(device=device).manual_seed(0)
    x_eval = levels(setup, setup.eval_images, device)
    k, kbs = setup.eval_samples, setup.eval_sample_batch

    def seconds_per_call(official_fn, nf_fn) -> dict[str, float]:
        """Best seconds per call, without autograd, of ``official_fn`` and of ``nf_fn`` in fp32 and in bf16."""
        def call(name: str) -> None:
            with torch.no_grad(), common.autocast(device, variants[name][1]):
                (official_fn if name == "official" else nf_fn)()
        return common.best_seconds_per_call({name: functools.partial(call, name) for name in variants}, device, 1,
                                            repeats)

    seconds = seconds_per_call(lambda: official.sample(n), lambda: ours.sample(n, generator=generator))
    result["images_per_s"] = {name: n / s for name, s in seconds.items()}
    seconds = seconds_per_call(lambda: iwbo_batched(official, x_eval, k, kbs),
                               lambda: importance_weighted_log_prob(ours, x_eval, num_samples=k, sample_batch_size=kbs,
                                                                    noise=generator))
    result["eval_s_per_image"] = {name: s / setup.eval_images for name, s in seconds.items()}
    return result


def official_table(results: list[dict]) -> str:
    """Speed: the official code and nf in fp32 and bf16; "speed-up" is the official time over nf's bf16 time."""
    lines = ["| config | image | params (nf / official) | train batch | train steps/s: official | nf fp32 | nf bf16 | "
             "speed-up | sample batch | sampling img/s: official | nf fp32 | nf bf16 | speed-up | K | draws per pass | "
             "K-sample eval s/image: official | nf fp32 | nf bf16 | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, train, sample, evaluate = r["setup"], r["steps_per_s"], r["images_per_s"], r["eval_s_per_image"]
        lines.append(
            f"| {r['name']} ({s.preset}) | {'x'.join(map(str, s.data.shape))} | {r['params'] / 1e6:.2f} M / "
            f"{r['official_params'] / 1e6:.2f} M | {s.train_batch} | {train['official']:.3g} | {train['fp32']:.3g} | "
            f"{train['bf16']:.3g} | {train['bf16'] / train['official']:.2f}x | {s.sample_batch} | "
            f"{sample['official']:.3g} | {sample['fp32']:.3g} | {sample['bf16']:.3g} | "
            f"{sample['bf16'] / sample['official']:.2f}x | {s.eval_samples} | {s.eval_sample_batch} | "
            f"{evaluate['official']:.3g} | {evaluate['fp32']:.3g} | {evaluate['bf16']:.3g} | "
            f"{evaluate['official'] / evaluate['bf16']:.2f}x |")
    return "\n".join(lines)


def accuracy_table(results: list[dict]) -> str:
    """What bf16 autocast does to the likelihood: nf's and the official code run under the same autocast."""
    lines = ["| config | weights | largest bits/dim change under bf16 autocast: nf | official |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} ({r['setup'].preset}) | {r['weights']} | {r['bf16_error']:.2g} | "
                     f"{r['official_bf16_error']:.2g} |")
    return "\n".join(lines)


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
                                bf16_help="bf16 autocast (CUDA, or a CPU with native bf16)")
    common.add_setup_arguments(parser, list(SETUPS), train_steps=2, repeats=1,
                               repeats_help="timed sampling calls per setup")
    parser.add_argument("--official-root", type=Path, default=None, metavar="PATH",
                        help="folder holding the official DenseFlow and survae_flows checkouts: compare with them")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE, metavar="FILE",
                        help="with --official-root: the reference fixture whose official weights the 'small' "
                             "configuration uses where the file exists (default: %(default)s)")
    args = common.parse_args(parser)
    if args.official_root is not None:
        if args.bf16:
            parser.error("--official-root always measures nf in fp32 and in bf16; leave out --bf16")
        if args.threads:
            torch.set_num_threads(args.threads)
        jobs = [(name, args.device, args.train_steps, args.repeats, torch.get_num_threads(),
                 args.official_root.resolve(), args.fixture) for name in args.configs]
        results = common.run_each(run_official_setup, jobs, fresh_process=args.device == "cpu")
        header = common.report_header("DenseFlow: nf against the official implementation", args.device, False,
                                      precision="official in fp32, nf in fp32 and under bf16 autocast")
        report = f"{header}\n\n{official_table(results)}\n\n{accuracy_table(results)}\n"
    else:
        results = common.run_setups(run_setup, args)
        header = common.report_header("DenseFlow benchmark", args.device, args.bf16)
        report = f"{header}\n\n{table(results, args.device)}\n"
    print(report)
    common.write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
