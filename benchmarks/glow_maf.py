"""Speed and memory of nf's Glow and MAF against normflows' Glow and zuko's MAF at equal configurations.

For every case it measures, for each implementation:

* training steps/s: ``-log_prob(x).mean()``, backward and an Adam step (lr 1e-4, the same for all) on a fixed batch;
* sampling samples/s: drawing a batch of samples in eval mode without gradients;
* peak memory of a training step and of a sampling call, each after one untimed call (CPU: the rise of the
  process's peak resident set; CUDA: ``max_memory_allocated``), in a fresh process per implementation, the
  implementations taking turns.

Timing follows the method of ``common.py`` (benchmarks/README.md): the implementations of a case take turns, round
by round, and each gets the same number of samples; the table gives medians with their range, and each speed-up is
the ratio of the medians with the range of the per-round ratios. The settings are equal: fp32, the same threads,
batch, optimizer and seed. The configurations are equal too: the same levels, steps and widths for Glow (normflows'
``GlowBlock`` with ``net_actnorm=True`` is openai/glow's coupling network; nf's Glow runs with ``edge_bias=False``
here because normflows has no edge bias); the same MADE sizes, number of layers, ReLU and reversed orders for MAF
(nf's MAF without batch norm, as zuko has none; the row ``nf (+BN)`` is the paper's setting, not part of the
comparison). zuko and normflows are needed (``pip install -r benchmarks/requirements.txt``).

    python benchmarks/glow_maf.py                       # the full table (about ten minutes on 2 CPU cores)
    python benchmarks/glow_maf.py --tiny                # a seconds-long check that the script works
    python benchmarks/glow_maf.py --output benchmarks/results/glow_maf_cpu.md
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import common
import torch
from torch import Tensor, nn

from nfkit_core.plugins import DataInfo
from nfkit_glow_maf import GlowConfig, MAFConfig, build_glow, build_maf


@dataclass
class Case:
    """One model size: each implementation's maker builds (module, loss(x), sample(n)); ``baseline`` names the other
    library's implementation, which the speed-ups are relative to."""

    model: str
    size: str
    batch: int
    num_samples: int
    data: Callable[[int], Tensor]
    implementations: dict[str, Callable[[], tuple[nn.Module, Callable, Callable]]]
    baseline: str


# ---------------------------------------------------------------------------------------------- implementations


def nf_maf(features: int, hidden: int, layers: int, batch_norm: bool):
    def make():
        flow = build_maf(MAFConfig(num_layers=layers, hidden_features=hidden, hidden_layers=2, batch_norm=batch_norm),
                         DataInfo((features,)))
        return flow, lambda x: -flow.log_prob(x).mean(), lambda n: flow.sample(n)
    return make


def zuko_maf(features: int, hidden: int, layers: int):
    def make():
        import zuko

        flow = zuko.flows.MAF(features, 0, transforms=layers, hidden_features=(hidden, hidden))
        return flow, lambda x: -flow().log_prob(x).mean(), lambda n: flow().sample((n,))
    return make


def nf_glow(shape: tuple[int, int, int], levels: int, steps: int, width: int):
    def make():
        config = GlowConfig(num_levels=levels, steps_per_level=steps, hidden_channels=width, edge_bias=False)
        flow = build_glow(config, DataInfo(shape))
        return flow, lambda x: -flow.log_prob(x).mean(), lambda n: flow.sample(n)
    return make


def normflows_glow(shape: tuple[int, int, int], levels: int, steps: int, width: int):
    """normflows' multi-scale Glow as in its README / examples/glow.ipynb."""
    def make():
        import normflows as nfl

        channels, height, width_ = shape
        q0, merges, flows = [], [], []
        for i in range(levels):
            level = [nfl.flows.GlowBlock(channels * 2 ** (levels + 1 - i), width, split_mode="channel", scale=True,
                                         net_actnorm=True) for _ in range(steps)]
            flows.append(level + [nfl.flows.Squeeze()])
            if i > 0:
                merges.append(nfl.flows.Merge())
                latent = (channels * 2 ** (levels - i), height // 2 ** (levels - i), width_ // 2 ** (levels - i))
            else:
                latent = (channels * 2 ** (levels + 1), height // 2 ** levels, width_ // 2 ** levels)
            q0.append(nfl.distributions.GlowBase(latent))
        model = nfl.MultiscaleFlow(q0, flows, merges, class_cond=False)
        return model, lambda x: model.forward_kld(x), lambda n: model.sample(n)[0]
    return make


def cases(tiny: bool) -> list[Case]:
    def gaussian(features):
        return lambda n: torch.randn(n, features)

    def images(shape):
        return lambda n: torch.rand(n, *shape) * 2 - 1

    mafs = (("small", dict(features=8, hidden=100, layers=5), 512, 1000),
            ("large", dict(features=64, hidden=512, layers=5), 256, 256))
    glows = (("small", dict(shape=(3, 16, 16), levels=2, steps=8, width=128), 32),
             ("large", dict(shape=(3, 32, 32), levels=3, steps=16, width=256), 16))
    if tiny:
        mafs = (("tiny", dict(features=4, hidden=8, layers=2), 16, 16),)
        glows = (("tiny", dict(shape=(3, 8, 8), levels=2, steps=1, width=8), 4),)
    result = []
    for size, spec, batch, samples in mafs:
        label = f"{size}: D={spec['features']}, {spec['layers']} MADEs of 2x{spec['hidden']}"
        result.append(Case("MAF", label, batch, samples, gaussian(spec["features"]), {
            "nf": nf_maf(**spec, batch_norm=False),
            "zuko": zuko_maf(**spec),
            "nf (+BN)": nf_maf(**spec, batch_norm=True),
        }, baseline="zuko"))
    for size, spec, batch in glows:
        label = (f"{size}: {'x'.join(map(str, spec['shape']))}, L={spec['levels']}, K={spec['steps']}, "
                 f"width {spec['width']}")
        result.append(Case("Glow", label, batch, batch, images(spec["shape"]), {
            "nf": nf_glow(**spec),
            "normflows": normflows_glow(**spec),
        }, baseline="normflows"))
    return result


# ---------------------------------------------------------------------------------------------- measurement


@dataclass
class Model:
    """One implementation of a case, built with a fixed seed, with its training step and its sampling call."""

    params: int
    train_step: Callable[[], None]
    sample: Callable[[], None]


def build(case: Case, name: str, device: torch.device) -> Model:
    torch.manual_seed(0)
    module, loss_fn, sample_fn = case.implementations[name]()
    module.to(device)
    x = case.data(case.batch).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

    def train_step() -> None:
        module.train()
        loss = loss_fn(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sample() -> None:
        module.eval()
        with torch.no_grad():
            sample_fn(case.num_samples)

    train_step()  # data-dependent initialisations
    return Model(sum(p.numel() for p in module.parameters()), train_step, sample)


def peak_memory(case_index: int, name: str, device_name: str, threads: int, tiny: bool) -> tuple[float, float]:
    """Peak memory (MiB) of a training step and of a sampling call of one implementation, each after one untimed
    call (which allocates the gradients, the optimizer's state and the libraries' lazy state); run in a fresh
    process."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    model = build(cases(tiny)[case_index], name, device)
    model.train_step()
    with common.PeakMemory(device) as training:
        model.train_step()
    model.sample()
    with common.PeakMemory(device) as sampling:
        model.sample()
    return training.mib, sampling.mib


def time_cases(args) -> list[dict]:
    """Every case's training steps and sampling calls, the implementations taking turns (one process's share of the
    rounds: see ``common.time_in_processes``), with their parameter counts."""
    device = torch.device(args.device)
    results = []
    for case in cases(args.tiny):
        models = {name: build(case, name, device) for name in case.implementations}
        results.append(dict(params={name: m.params for name, m in models.items()},
                            training=common.time_variants({name: m.train_step for name, m in models.items()}, args,
                                                          device),
                            sampling=common.time_variants({name: m.sample for name, m in models.items()}, args,
                                                          device)))
        del models
    return results


def rows(case: Case, timed: dict, memory: dict[str, list[tuple[float, float]]]) -> list[str]:
    """The table rows of one case."""
    training, sampling = timed["training"], timed["sampling"]
    lines = []
    for name in case.implementations:
        train_mib, sample_mib = (statistics.median(phase) for phase in zip(*memory[name]))
        speedup = ("baseline" if name == case.baseline else
                   f"{training.speedup(name, case.baseline).format(suffix='x')} / "
                   f"{sampling.speedup(name, case.baseline).format(suffix='x')}")
        lines.append(f"| {case.model} | {case.size} | {name} | {timed['params'][name]:,} | {case.batch} | "
                     f"{training[name].rate().format()} | {sampling[name].rate(case.num_samples).format()} | "
                     f"{train_mib:.1f} | {sample_mib:.1f} | {speedup} |")
    return lines


def main() -> None:
    parser = common.make_parser(__doc__)
    args = common.parse_args(parser)
    try:
        import normflows
        import zuko
    except ImportError as error:
        parser.error(f"{error.name} is not installed; this benchmark compares with zuko and normflows: "
                     "pip install -r benchmarks/requirements.txt")
    stamp = common.Stamp("Glow and MAF: nf against normflows and zuko", args)
    kind = common.PeakMemory.kind(args.device)
    lines = ["| model | size | implementation | params | batch | train steps/s | samples/s | "
             f"train MiB ({kind}) | sampling MiB ({kind}) | speed-up train / sampling |", "|" + "---|" * 10]
    memory = [common.run_alternating(peak_memory, {name: (index, name, args.device, args.threads, args.tiny)
                                                   for name in case.implementations},
                                     args.memory_rounds, fresh_process=args.device == "cpu")
              for index, case in enumerate(cases(args.tiny))]
    for case, timed, case_memory in zip(cases(args.tiny), common.time_in_processes(time_cases, args), memory,
                                        strict=True):
        lines += rows(case, timed, case_memory)
    versions = (f"zuko {zuko.__version__}, normflows {normflows.__version__}; every speed-up is nf's (or nf's with "
                "batch norm) over the other library's row of its case, same seed, not the same weights (the "
                "parameterisations differ)")
    common.write_report(args.output, stamp.render([versions]) + "\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
