"""DenseFlow's layers: the glow-like module, the block with cross-unit coupling, the variational dequantizer."""

from __future__ import annotations

import pytest
import torch

from nfkit_core import noise
from nfkit_core.priors import normal_log_prob
from nfkit_core.testing import check_transform
from nfkit_denseflow import DenseAttentionNet, DenseFlowBlock
from nfkit_denseflow.block import glow_module
from nfkit_denseflow.dequantization import make_dequantizer
from nfkit_denseflow.nets import DenseBlock


def tiny_net(channels: int) -> DenseAttentionNet:
    return DenseAttentionNet(channels // 2, 2 * (channels - channels // 2), mid_channels=8, depth=2, growth=8)


def tiny_block(**options) -> DenseFlowBlock:
    options = {"num_units": 3, "modules_per_unit": 1, "growth_rate": 2, "mid_channels": 8, "dense_depth": 2,
               "dense_growth": 8, **options}
    return DenseFlowBlock(4, **options)


def test_coupling_net_starts_at_zero_and_shapes():
    net = tiny_net(6)
    out = net(torch.randn(2, 3, 4, 4))
    assert out.shape == (2, 6, 4, 4)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("lu", [True, False])
def test_glow_module_conformance(lu):
    torch.manual_seed(0)
    errors = check_transform(lambda: glow_module(4, tiny_net(4), lu=lu), torch.randn(3, 4, 4, 4),
                             batch_statistics=True)
    assert errors["log_det_vs_jacobian"] < 1e-6


def test_block_conformance():
    torch.manual_seed(0)
    check_transform(lambda: tiny_block(), torch.randn(3, 4, 4, 4), batch_statistics=True)


def test_block_inverse_scores_the_dropped_noise():
    """inverse(forward(x)) == x, and the inverse's log-det (with +log q of the dropped noise) cancels the forward's."""
    torch.manual_seed(0)
    block = tiny_block()
    x = torch.randn(3, 4, 4, 4)
    block(x)  # ActNorm initialisation
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    block.eval()
    with torch.no_grad():
        z, log_det = block(x)
        x_back, inverse_log_det = block.inverse(z)
    assert z.shape == (3, 8, 4, 4)
    torch.testing.assert_close(x_back, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inverse_log_det, -log_det, rtol=1e-5, atol=1e-4)


def test_cross_unit_coupling_term_is_log_sigma_minus_log_normal():
    """The augmentation adds sum(log sigma) - log N(eps), with (mu, log sigma) from the block input."""
    torch.manual_seed(0)
    block = tiny_block(num_units=2)
    x = torch.randn(2, 4, 4, 4)
    block(x)
    with torch.no_grad():
        for p in block.augment.parameters():
            p.add_(0.2 * torch.randn_like(p))
    block.eval()
    with torch.no_grad(), noise.use(noise.Record()) as record:
        _, log_det = block(x)
        (eps,) = record.draws
        y0, log_det_0 = block.units[0](x)
        mean, log_sigma = block.augment[0].conditioner(x).chunk(2, dim=1)
        e = mean + log_sigma.exp() * eps
        _, log_det_1 = block.units[1](torch.cat([y0, e], dim=1))
    assert log_sigma.abs().max() > 0  # the conditioner is used
    assert log_sigma.abs().max() <= 2  # 2 tanh(s / 2)
    expected = log_det_0 + log_det_1 + (log_sigma - normal_log_prob(eps)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(log_det, expected, rtol=1e-5, atol=1e-4)


def test_dense_block_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = DenseBlock(4, 6, depth=3, growth=4)
    checkpointed = DenseBlock(4, 6, depth=3, growth=4, checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 5, 5)
    for block in (plain, checkpointed):
        block(x).square().sum().backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("kind", ["variational", "uniform"])
def test_dequantizer_conformance(kind):
    torch.manual_seed(0)
    levels = torch.randint(0, 17, (3, 3, 4, 4)).float()
    make = lambda: make_dequantizer(kind, (3, 4, 4), 17, steps=1, context_channels=4, mid_channels=4, depth=1,
                                    growth=4)
    check_transform(make, levels)
    y, _ = make()(levels)
    assert y.min() > -0.5 and y.max() < 0.5
    assert torch.equal(torch.floor((y + 0.5) * 17), levels)


def test_dequantizer_rejects_bad_levels_and_shapes():
    dequantizer = make_dequantizer("variational", (1, 4, 4), 17, steps=1, context_channels=4, mid_channels=4,
                                   depth=1, growth=4)
    with pytest.raises(ValueError, match=r"\[0, 17\)"):
        dequantizer(torch.full((1, 1, 4, 4), 17.0))
    with pytest.raises(ValueError, match="non-integer"):
        dequantizer(torch.full((1, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="even H and W"):
        make_dequantizer("variational", (1, 5, 4), 17)
    with pytest.raises(ValueError, match="dequantization must be"):
        make_dequantizer("gaussian", (1, 4, 4), 17)


def test_block_rejects_bad_input():
    block = tiny_block()
    with pytest.raises(ValueError, match=r"\(batch, 4, H, W\)"):
        block(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match=r"\(batch, 8, H, W\)"):
        block.inverse(torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match="growth_rate"):
        DenseFlowBlock(4, num_units=2, modules_per_unit=1, growth_rate=0, mid_channels=8)
    with pytest.raises(ValueError, match="at least 2 channels"):
        DenseFlowBlock(1, num_units=1, modules_per_unit=1, growth_rate=2, mid_channels=8)
