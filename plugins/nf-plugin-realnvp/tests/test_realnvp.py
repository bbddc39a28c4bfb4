"""The outsider plugin passes nfkit-core's conformance suite and learns a real two-dimensional density."""

from __future__ import annotations

import math

import pytest
import torch
from nfkit_realnvp import RealNVPConfig, build_realnvp

from nfkit_core.plugins import DataInfo, PluginManager
from nfkit_core.testing import check_flow


def test_registered_through_the_entry_point():
    manager = PluginManager()
    entry = manager.registry.architectures.entry("realnvp")
    assert (entry.plugin, entry.distribution) == ("realnvp", "nfkit-plugin-realnvp")


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 4)])
def test_image_model_conforms(shape):
    torch.manual_seed(0)
    flow = build_realnvp(RealNVPConfig(scales=2, couplings=2, hidden=8), DataInfo(shape))
    errors = check_flow(flow, torch.rand(3, *shape) * 2 - 1)
    assert errors["terms"] < 1e-5 and errors["latent_prior"] < 1e-5


def test_vector_model_conforms_and_inverts():
    torch.manual_seed(0)
    flow = build_realnvp(RealNVPConfig(couplings=2, hidden=16), DataInfo((5,)))
    x = torch.randn(4, 5)
    errors = check_flow(flow, x)
    assert errors["latent_roundtrip"] < 1e-5


def test_learns_two_moons():
    """Maximum likelihood on 2-d moons: the held-out NLL must fall from ~N(0, I)'s to below 1.6 nats."""
    from sklearn.datasets import make_moons

    torch.manual_seed(0)
    data = torch.tensor(make_moons(3000, noise=0.05, random_state=0)[0], dtype=torch.float32)
    data = (data - data.mean(0)) / data.std(0)
    train, held_out = data[:2500], data[2500:]
    flow = build_realnvp(RealNVPConfig(couplings=3, hidden=64), DataInfo((2,)))
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    initial = -flow.log_prob(held_out).mean().item()
    for _ in range(300):
        batch = train[torch.randint(0, len(train), (256,))]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = -flow.log_prob(held_out).mean().item()
    assert initial > 2.5 and math.isfinite(final)
    assert final < 1.6, f"held-out NLL {final:.3f} nats"


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="divisible by 4"):
        build_realnvp(RealNVPConfig(scales=3), DataInfo((1, 6, 6)))
    with pytest.raises(ValueError, match="vectors of 2 or more features"):
        build_realnvp(RealNVPConfig(), DataInfo((1,)))
