"""Record the small parity fixtures that nf's tests compare against, by running the official implementations.

Each fixture is a dict saved with ``torch.save``: the official model's constructor arguments (``config``), its weights
(``state_dict``, parameter names as in the official code), fixed inputs, and what the official code computed from them
in float32 on the CPU. The ports load ``state_dict`` and must reproduce every recorded output; the tests that do so are
``packages/nf-arch-tarflow/tests/test_parity.py`` and ``packages/nf-arch-denseflow/tests/test_official_parity.py``.
``docs/guides/parity.rst`` says what each fixture proves.

The official code is third-party and never part of this repository: it is imported from local checkouts given on the
command line::

    git clone https://github.com/apple/ml-tarflow /tmp/official/ml-tarflow
    git clone https://github.com/matejgrcic/DenseFlow /tmp/official/DenseFlow
    git clone https://github.com/didriknielsen/survae_flows /tmp/official/survae_flows
    python tools/record_official_fixtures.py --tarflow /tmp/official/ml-tarflow \\
        --denseflow /tmp/official/DenseFlow --survae /tmp/official/survae_flows

(the DenseFlow model is imported as ``model.dense_flow`` from ``DenseFlow/experiments/image``, its survae fork as the
``denseflow`` package from the DenseFlow checkout, and ``survae`` from the survae_flows checkout, as
``benchmarks/denseflow.py`` does). The models are small (64 channels, a few layers) so that the fixtures stay small;
widths do not matter for catching a wrong sign, order, mask, flip or scale, and the seeds make every run write the same
values on the same software.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[1]
TARFLOW_FIXTURES = REPOSITORY / "packages" / "nf-arch-tarflow" / "tests" / "fixtures"
DENSEFLOW_FIXTURES = REPOSITORY / "packages" / "nf-arch-denseflow" / "tests" / "fixtures"

# Official TarFlow constructor arguments (its MetaBlock fixes head_dim=64 and expansion=4, so 64 channels is one head).
# The unconditional model has four blocks, so both token orders occur twice; the conditional one has two layers per
# block and classes, so layer order, class embeddings and dropped labels are exercised.
TARFLOW_CONFIGS = {
    "tarflow_uncond_tiny.pt": (dict(in_channels=1, img_size=8, patch_size=2, channels=64, num_blocks=4,
                                    layers_per_block=1, nvp=True, num_classes=0), 11),
    "tarflow_cond_tiny.pt": (dict(in_channels=3, img_size=8, patch_size=2, channels=64, num_blocks=2,
                                  layers_per_block=2, nvp=True, num_classes=3), 12),
}
# The settings of the official ``Model.reverse`` whose samples are recorded.
SAMPLE_SETTINGS = {
    "plain": dict(guidance=0.0),
    "guided": dict(guidance=1.5, attn_temp=0.8),
    "guided_annealed_a": dict(guidance=2.0, guide_what="a", annealed_guidance=True, attn_temp=1.2),
}
DENOISE_NOISE_STD = 0.05

# Official DenseFlow constructor arguments, plus the sizes of the networks that the official constructors fix (the
# DNMH coupling networks: depth 7, growth 64; the DequantizationFlow: 4 steps, 64 context and mid channels, depth 4,
# growth 64), shrunk here by wrapping those constructors; nf's names for them.
DENSEFLOW_CONFIG = dict(data_shape=(3, 16, 16), block_config=[2, 2, 1], layers_config=[1, 1, 2],
                        layer_mid_chnls=[8, 8, 8], growth_rate=4)
DENSEFLOW_SIZES = dict(dense_depth=2, dense_growth=8, dequantization_steps=2, dequantization_context_channels=8,
                       dequantization_mid_channels=8, dequantization_depth=2, dequantization_growth=8)
DENSEFLOW_SEED = 13


def commit_of(checkout: Path) -> str:
    """The short commit hash of a git checkout, or ``"unknown"``."""
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def tarflow_fixture(transformer_flow, config: dict, seed: int) -> dict:
    """Run the official TarFlow ``Model`` on fixed inputs and collect what the parity tests compare."""
    torch.manual_seed(seed)
    model = transformer_flow.Model(**config)
    with torch.no_grad():
        # The official output projections start at zero (an identity flow); give them trained-looking values.
        for block in model.blocks:
            block.proj_out.weight.normal_(0.0, 0.02)
            block.proj_out.bias.normal_(0.0, 0.05)
    model.eval()
    batch, size, channels = 4, config["img_size"], config["in_channels"]
    tokens, token_dim = (size // config["patch_size"]) ** 2, channels * config["patch_size"] ** 2
    x = torch.rand(batch, channels, size, size) * 2 - 1
    y = y_dropped = None
    if config["num_classes"]:
        y = torch.randint(config["num_classes"], (batch,))
        y_dropped = y.clone()
        y_dropped[::2] = -1
    noise = torch.randn(batch, tokens, token_dim)
    with torch.no_grad():
        z, block_outputs, logdets = model(x, y)
        loss = model.get_loss(z, logdets)
        z_dropped = model(x, y_dropped)[0] if y is not None else None
        samples = {name: {"kwargs": kwargs, "x": model.reverse(noise.clone(), y, **kwargs)}
                   for name, kwargs in SAMPLE_SETTINGS.items()}
        reverse_sequence = model.reverse(noise.clone(), y, return_sequence=True)
    # One denoising step as the official sample notebook takes it: x - lr * grad(loss), lr = B * N * sigma^2.
    step_size = batch * size ** 2 * channels * DENOISE_NOISE_STD ** 2
    start = samples["plain"]["x"].clone().requires_grad_(True)
    z_start, _, logdets_start = model(start, y)
    grad = torch.autograd.grad(model.get_loss(z_start, logdets_start), [start])[0]
    denoise = {"noise_std": DENOISE_NOISE_STD, "step_size": step_size, "input": start.detach(),
               "output": (start - step_size * grad).detach()}
    return {"config": config, "seed": seed, "state_dict": model.state_dict(), "x": x, "y": y, "y_dropped": y_dropped,
            "z": z, "z_with_dropped_labels": z_dropped, "block_outputs": block_outputs, "logdets": logdets,
            "loss": loss, "noise": noise, "samples": samples, "reverse_sequence": reverse_sequence,
            "denoise": denoise}


@contextlib.contextmanager
def recorded_normal_draws() -> Iterator[list[torch.Tensor]]:
    """Collect, in order, every standard-normal draw made through ``torch.randn`` or ``torch.normal``.

    The official DenseFlow draws its dequantizer and prior noise with ``torch.randn`` (survae's ``DiagonalNormal``,
    before scaling) and its cross-unit noise with ``torch.distributions.Normal(0, 1).sample`` (``torch.normal``).
    """
    draws: list[torch.Tensor] = []
    randn, normal = torch.randn, torch.normal

    def recording(function):
        @functools.wraps(function)
        def draw(*args, **kwargs):
            value = function(*args, **kwargs)
            draws.append(value.detach().clone())
            return value
        return draw

    torch.randn, torch.normal = recording(randn), recording(normal)
    try:
        yield draws
    finally:
        torch.randn, torch.normal = randn, normal


def import_official_denseflow(denseflow: Path, survae: Path, sizes: dict):
    """The official ``DenseFlow`` class, its fixed network sizes replaced by ``sizes``."""
    sys.path[:0] = [str(denseflow), str(denseflow / "experiments" / "image"), str(survae)]
    from model import affine_coupling, dense_flow

    dense_net = affine_coupling.DenseNetMultihead
    affine_coupling.DenseNetMultihead = lambda **kwargs: dense_net(
        **{**kwargs, "depth": sizes["dense_depth"], "growth": sizes["dense_growth"]})
    dense_flow.DequantizationFlow = functools.partial(
        dense_flow.DequantizationFlow, num_steps=sizes["dequantization_steps"],
        num_context=sizes["dequantization_context_channels"], mid_channels=sizes["dequantization_mid_channels"],
        depth=sizes["dequantization_depth"], growth=sizes["dequantization_growth"])
    return dense_flow.DenseFlow


def denseflow_fixture(official_class, config: dict, sizes: dict, seed: int) -> dict:
    """Run the official DenseFlow on fixed images, recording every noise draw of ``log_prob`` and ``sample``."""
    torch.manual_seed(seed)
    model = official_class(**config, checkpointing=False)
    batch, num_dims = 4, math.prod(config["data_shape"])
    x = torch.randint(0, 256, (batch, *config["data_shape"]))
    with torch.no_grad():
        model.train()
        model.log_prob(x)  # the official data-dependent ActNorm initialisation (and BatchNorm statistics)
        # Zero-initialised output layers make the couplings identities; give every parameter trained-looking values.
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
        model.eval()
        with recorded_normal_draws() as log_prob_noise:
            log_prob = model.log_prob(x)
        with recorded_normal_draws() as sample_noise:
            samples = model.sample(3)
    return {"config": {**config, **sizes}, "seed": seed, "state_dict": model.state_dict(), "x": x,
            "log_prob": log_prob, "bits_per_dim": -log_prob / (num_dims * math.log(2)),
            "log_prob_noise": log_prob_noise, "samples": samples.round().long(), "sample_noise": sample_noise,
            "note": "log_prob_noise lists every Gaussian draw of model.log_prob(x) in order: the variational "
                    "dequantizer's base noise first, then each cross-unit coupling's noise in forward order. "
                    "sample_noise likewise for sample(3): the prior draw first, then the dropped halves of the "
                    "transitions, deepest first. config holds the official constructor arguments and the sizes of "
                    "the networks the official constructors fix."}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarflow", type=Path, help="checkout of apple/ml-tarflow (holds transformer_flow.py)")
    parser.add_argument("--denseflow", type=Path, help="checkout of matejgrcic/DenseFlow")
    parser.add_argument("--survae", type=Path, help="checkout of didriknielsen/survae_flows (needed with --denseflow)")
    parser.add_argument("--tarflow-output", type=Path, default=TARFLOW_FIXTURES)
    parser.add_argument("--denseflow-output", type=Path, default=DENSEFLOW_FIXTURES)
    args = parser.parse_args(argv)
    if args.tarflow is None and args.denseflow is None:
        parser.error("give --tarflow and/or --denseflow (with --survae): the checkouts to record from")
    if args.denseflow is not None and args.survae is None:
        parser.error("--denseflow needs --survae: the official DenseFlow imports didriknielsen/survae_flows")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if args.tarflow is not None:
        if not (args.tarflow / "transformer_flow.py").is_file():
            parser.error(f"--tarflow {args.tarflow}: transformer_flow.py not found (a checkout of apple/ml-tarflow)")
        sys.path.insert(0, str(args.tarflow))
        import transformer_flow

        args.tarflow_output.mkdir(parents=True, exist_ok=True)
        for name, (config, seed) in TARFLOW_CONFIGS.items():
            fixture = tarflow_fixture(transformer_flow, config, seed)
            fixture["source"] = f"apple/ml-tarflow transformer_flow.Model (commit {commit_of(args.tarflow)})"
            torch.save(fixture, args.tarflow_output / name)
            print(f"wrote {args.tarflow_output / name}")

    if args.denseflow is not None:
        model_file = args.denseflow / "experiments" / "image" / "model" / "dense_flow.py"
        if not model_file.is_file():
            parser.error(f"--denseflow {args.denseflow}: {model_file} not found (a checkout of matejgrcic/DenseFlow)")
        official_class = import_official_denseflow(args.denseflow, args.survae, DENSEFLOW_SIZES)
        fixture = denseflow_fixture(official_class, DENSEFLOW_CONFIG, DENSEFLOW_SIZES, DENSEFLOW_SEED)
        fixture["source"] = (f"matejgrcic/DenseFlow experiments/image/model/dense_flow.py DenseFlow (commit "
                             f"{commit_of(args.denseflow)}), survae_flows (commit {commit_of(args.survae)})")
        args.denseflow_output.mkdir(parents=True, exist_ok=True)
        path = args.denseflow_output / "denseflow_tiny.pt"
        torch.save(fixture, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
