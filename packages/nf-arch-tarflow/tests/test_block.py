"""The flow block and the patchify bijection: invertibility, log-determinant, causality, errors."""

from __future__ import annotations

import pytest
import torch

from nfkit_tarflow import Patchify, TarFlowBlock


@pytest.fixture
def make_block(randomize):
    """``make_block(nvp=True, flip=False, num_classes=0)``: a random block on 5 tokens of dimension 3."""

    def make(nvp: bool = True, flip: bool = False, num_classes: int = 0) -> TarFlowBlock:
        torch.manual_seed(0)
        block = TarFlowBlock(token_dim=3, num_tokens=5, channels=16, num_layers=2, head_dim=8, nvp=nvp,
                             num_classes=num_classes, flip=flip)
        return randomize(block).eval()

    return make


def test_patchify_matches_unfold_and_inverts():
    x = torch.randn(2, 3, 8, 4)
    patchify = Patchify(2, (3, 8, 4))
    tokens, log_det = patchify(x)
    expected = torch.nn.functional.unfold(x, 2, stride=2).transpose(1, 2)
    assert torch.equal(tokens, expected)
    assert torch.equal(log_det, torch.zeros(2))
    assert torch.equal(patchify.inverse(tokens)[0], x)


@pytest.mark.parametrize("nvp", [True, False])
@pytest.mark.parametrize("flip", [False, True])
def test_block_round_trip_and_log_det(make_block, nvp, flip):
    block = make_block(nvp, flip)
    x = torch.randn(4, 5, 3)
    z, log_det = block(x)
    with torch.no_grad():
        cached, inverse_log_det = block.inverse(z, kv_cache=True)
    naive, _ = block.inverse(z, kv_cache=False)
    torch.testing.assert_close(cached, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(naive, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(inverse_log_det, -log_det, rtol=0, atol=1e-5)
    if not nvp:
        assert torch.equal(log_det, torch.zeros(4))


@pytest.mark.parametrize("nvp", [True, False])
def test_log_det_matches_autograd_jacobian(make_block, nvp):
    block = make_block(nvp, flip=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    _, log_det = block(x)
    for i in range(2):
        jacobian = torch.autograd.functional.jacobian(lambda v: block(v[None])[0][0], x[i]).reshape(15, 15)
        assert torch.slogdet(jacobian).logabsdet.item() == pytest.approx(log_det[i].item(), abs=1e-8)
        # autoregressive: the Jacobian is triangular in the block's token order
        order = torch.arange(15).reshape(5, 3).flip(0).reshape(-1)
        permuted = jacobian[order][:, order]
        assert torch.allclose(permuted.triu(1), torch.zeros_like(permuted), atol=1e-12)


def test_flow_log_det_matches_autograd_jacobian(make_flow):
    flow = make_flow(shape=(1, 4, 4)).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    _, log_det = flow.transform(x)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow.transform(v)[0], x).reshape(16, 16)
    assert torch.slogdet(jacobian).logabsdet.item() == pytest.approx(log_det.item(), abs=1e-8)


def test_first_token_passes_unchanged_and_the_rest_change(make_block):
    for flip in (False, True):
        block = make_block(flip=flip)
        x = torch.randn(2, 5, 3)
        z, _ = block(x)
        first = -1 if flip else 0
        assert torch.equal(z[:, first], x[:, first])
        assert not torch.allclose(z, x)


def test_inverse_is_differentiable_with_gradients_enabled(make_block):
    block = make_block()
    z = torch.randn(2, 5, 3, requires_grad=True)
    x, _ = block.inverse(z)
    x.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_clear_errors_for_bad_shapes_and_labels(make_block, make_flow):
    block = make_block(num_classes=3)
    with pytest.raises(ValueError, match=r"tokens of shape \(batch, 5, 3\)"):
        block(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        block(torch.randn(2, 5, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        block(torch.randn(2, 5, 3), torch.tensor([-2, 0]))
    with pytest.raises(ValueError, match=r"labels of shape \(2,\)"):
        block(torch.randn(2, 5, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer tensor"):
        block(torch.randn(2, 5, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        Patchify(3, (1, 8, 8))
    flow = make_flow()
    with pytest.raises(ValueError, match=r"TarFlow expects data of shape \(batch, 2, 8, 8\)"):
        flow.log_prob(torch.randn(2, 2, 8, 4))
