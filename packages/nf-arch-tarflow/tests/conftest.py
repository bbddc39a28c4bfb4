"""Small TarFlow models shared by the tests, and nf's pytest plugin (one CPU thread per test)."""

from __future__ import annotations

import pytest
import torch

from nfkit_tarflow import TarFlow, TarFlowConfig

pytest_plugins = ["nfkit_core.testing.pytest_plugin"]


def _randomize(flow: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Give every parameter random values (a fresh model's zero output projection would make it an affine map).

    The output projections get a tenth of ``scale`` so that the predicted log-scales stay moderate.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in flow.named_parameters():
            std = scale / 10 if "proj_out" in name else scale
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return flow


def _make_flow(nvp: bool = True, num_classes: int = 0, shape=(2, 8, 8), seed: int = 0, **options) -> TarFlow:
    config = TarFlowConfig(patch_size=2, channels=32, num_blocks=2, layers_per_block=2, head_dim=16, nvp=nvp,
                           **options)
    torch.manual_seed(seed)
    return _randomize(TarFlow(config, shape, num_classes), seed).eval()


@pytest.fixture
def randomize():
    """``randomize(module, seed=0, scale=0.2)``: random values for every parameter."""
    return _randomize


@pytest.fixture
def make_flow():
    """``make_flow(nvp=True, num_classes=0, shape=(2, 8, 8), seed=0, **config)``: a small random TarFlow."""
    return _make_flow


@pytest.fixture
def guidance_settings() -> list[dict]:
    """Sampling options to run every sampler under: no guidance, CFG with an attention temperature, and annealed
    guidance of the log-scales alone."""
    return [
        dict(),
        dict(guidance=1.5, attn_temp=0.8),
        dict(guidance=2.0, guide_what="a", annealed_guidance=True, attn_temp=1.2),
    ]


@pytest.fixture
def draw():
    """``draw(flow, labels, **options)``: four samples of ``flow`` from a fixed seed."""
    return lambda flow, labels, **options: flow.sample(4, labels, generator=torch.Generator().manual_seed(3),
                                                       **options)


@pytest.fixture
def small_flow() -> TarFlow:
    return _make_flow()


@pytest.fixture
def conditional_flow() -> TarFlow:
    return _make_flow(num_classes=3, seed=1)
