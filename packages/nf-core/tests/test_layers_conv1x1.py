"""Invertible 1x1 convolution, plain and LU-decomposed."""

from __future__ import annotations

import pytest
import torch

from nfkit_core.layers import InvertibleConv1x1
from nfkit_core.testing import check_transform


@pytest.mark.parametrize("lu", [True, False])
@pytest.mark.parametrize("shape", [(3, 5), (3, 4, 3, 3), (2, 3, 4)])
def test_conformance(lu, shape):
    torch.manual_seed(0)
    check_transform(lambda: InvertibleConv1x1(shape[1], lu=lu), torch.randn(shape))


def test_lu_log_det_equals_slogdet_of_the_plain_matrix():
    torch.manual_seed(0)
    layer = InvertibleConv1x1(6, lu=True)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    plain = InvertibleConv1x1(6, lu=False)
    with torch.no_grad():
        plain.weight.copy_(layer.matrix())
    assert layer.log_abs_det().item() == pytest.approx(torch.linalg.slogdet(plain.weight).logabsdet.item(), abs=1e-5)
    x = torch.randn(2, 6, 3, 3)
    (z_lu, log_det_lu), (z_plain, log_det_plain) = layer(x), plain(x)
    torch.testing.assert_close(z_lu, z_plain)
    torch.testing.assert_close(log_det_lu, log_det_plain, atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("lu", [True, False])
def test_initialised_to_a_rotation(lu):
    torch.manual_seed(0)
    weight = InvertibleConv1x1(5, lu=lu).matrix()
    torch.testing.assert_close(weight @ weight.T, torch.eye(5), atol=1e-5, rtol=0)


def test_mixes_channels_like_a_1x1_convolution():
    layer = InvertibleConv1x1(3, lu=False)
    x = torch.randn(2, 3, 4, 4)
    expected = torch.nn.functional.conv2d(x, layer.weight.view(3, 3, 1, 1))
    torch.testing.assert_close(layer(x)[0], expected)


def test_wrong_channel_count_is_an_error():
    with pytest.raises(ValueError, match="InvertibleConv1x1 expects input of shape"):
        InvertibleConv1x1(3)(torch.randn(2, 4, 2, 2))


@pytest.mark.parametrize("lu", [True, False])
def test_bf16_autocast_leaves_the_data_path_in_float32(lu):
    """Under autocast only the coupling networks should run in bf16: a bf16 mixing would round the latent at every
    layer (8 bits of mantissa) and break the round trip."""
    torch.manual_seed(0)
    layer = InvertibleConv1x1(8, lu=lu)
    x = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        z, log_det = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z_autocast, log_det_autocast = layer(x)
            x_back, _ = layer.inverse(z_autocast)
    assert z_autocast.dtype == log_det_autocast.dtype == torch.float32
    assert torch.equal(z_autocast, z) and torch.equal(log_det_autocast, log_det)
    torch.testing.assert_close(x_back, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("lu", [True, False])
def test_matrices_reused_without_autograd_follow_every_parameter_change(lu, monkeypatch):
    inversions = []
    inv = torch.linalg.inv
    monkeypatch.setattr(torch.linalg, "inv", lambda matrix: inversions.append(1) or inv(matrix))
    torch.manual_seed(0)
    layer = InvertibleConv1x1(5, lu=lu)
    z = torch.randn(2, 5, 3, 3)

    def fresh_inverse() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x, log_det = layer.inverse(z)
        return x.detach(), log_det.detach()

    with torch.no_grad():
        first = layer.inverse(z)
        torch.testing.assert_close(layer.inverse(z), first, rtol=0, atol=0)
        assert len(inversions) == 1  # W^-1 was stored, not computed again
        torch.testing.assert_close(first, fresh_inverse(), rtol=0, atol=0)
        for parameter in layer.parameters():
            parameter.grad = torch.randn_like(parameter)
        torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True).step()  # in place, version counters unchanged
        second = layer.inverse(z)
        torch.testing.assert_close(second, fresh_inverse(), rtol=0, atol=0)
        assert not torch.allclose(second[0], first[0])
        layer.load_state_dict({k: v + 0.05 for k, v in layer.state_dict().items()
                               if k in dict(layer.named_parameters())}, strict=False)
        torch.testing.assert_close(layer.inverse(z), fresh_inverse(), rtol=0, atol=0)
        x, log_det = layer(layer.inverse(z)[0])
        torch.testing.assert_close(x, z, atol=1e-5, rtol=0)
        layer64 = layer.double()
        assert layer64.inverse(z.double())[0].dtype == torch.float64


@pytest.mark.parametrize("channels", [1, 2, 7])
def test_lu_stores_only_the_free_entries(channels):
    """``C^2`` parameters either way: strict lower + strict upper triangles + diagonal, as papers count them."""
    lu, plain = InvertibleConv1x1(channels, lu=True), InvertibleConv1x1(channels, lu=False)
    assert sum(p.numel() for p in lu.parameters()) == sum(p.numel() for p in plain.parameters()) == channels ** 2
    assert lu.lower.shape == lu.upper.shape == (channels * (channels - 1) // 2,)
    assert set(lu.state_dict()) == {"permutation", "sign_diag", "lower", "upper", "log_diag"}


def test_lu_loads_checkpoints_with_full_masked_matrices():
    """Checkpoints written before the packed storage held ``lower`` and ``upper`` as masked ``C x C`` matrices."""
    torch.manual_seed(0)
    layer = InvertibleConv1x1(4, lu=True)
    with torch.no_grad():
        layer.lower.add_(torch.randn_like(layer.lower))
        layer.upper.add_(torch.randn_like(layer.upper))
    mask = torch.ones(4, 4).tril(-1)
    old = {"permutation": layer.permutation, "sign_diag": layer.sign_diag, "lower_mask": mask,
           "lower": torch.zeros(4, 4).index_put(tuple(layer.lower_indices), layer.lower.detach()) + 5 * mask.T,
           "upper": torch.zeros(4, 4).index_put(tuple(layer.upper_indices), layer.upper.detach()) + 5 * mask,
           "log_diag": layer.log_diag.detach()}
    loaded = InvertibleConv1x1(4, lu=True)
    loaded.load_state_dict(old)
    torch.testing.assert_close(loaded.matrix(), layer.matrix(), rtol=0, atol=0)
