"""nfkit_core.NormalizingFlow from the shared layers: exact log-likelihood, terms, bits/dim, sampling, conformance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nfkit_core import (
    ClassConditionalGaussian,
    LogLikelihood,
    NormalizingFlow,
    Sequential,
    StandardNormal,
    bits_per_dim,
    importance_weighted_log_prob,
)
from nfkit_core.layers import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Augment,
    BatchNorm,
    ChannelSwap,
    InvertibleConv1x1,
    RandomPermutation,
    Reverse,
    Split,
    Squeeze,
    UniformDequantization,
)
from nfkit_core.priors import normal_log_prob
from nfkit_core.testing import check_flow


def conv_net(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, out_channels, 3, padding=1))


class LabelConvNet(nn.Module):
    """A conv net whose output gets a learned bias per class label (the context)."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.net = conv_net(in_channels, out_channels)
        self.embed = nn.Embedding(num_classes, out_channels)

    def forward(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.net(h) + self.embed(context)[:, :, None, None]


def glow_step(channels: int) -> Sequential:
    half = channels // 2
    return Sequential({"actnorm": ActNorm(channels), "conv": InvertibleConv1x1(channels),
                       "coupling": AffineCoupling(conv_net(half, 2 * (channels - half)), log_scale="sigmoid",
                                                  params="interleaved", shift_first=True)})


def multiscale_flow() -> NormalizingFlow:
    """(1, 4, 4) -> squeeze (4, 2, 2) -> step -> split (2, 2, 2) with a learned prior -> step."""
    transform = Sequential({"squeeze": Squeeze(), "level0": glow_step(4),
                            "split": Split(2, conv_net(2, 4), params="interleaved"), "level1": glow_step(2)})
    return NormalizingFlow(transform, StandardNormal((2, 2, 2)), data_shape=(1, 4, 4))


def vector_flow() -> NormalizingFlow:
    def mlp(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Linear(i, 16), nn.Tanh(), nn.Linear(16, o))

    steps = {"bn0": BatchNorm(5), "coupling0": AffineCoupling(mlp(2, 6), log_scale="tanh"), "reverse": Reverse(),
             "actnorm": ActNorm(5), "coupling1": AdditiveCoupling(mlp(2, 3)), "permute": RandomPermutation(5),
             "conv": InvertibleConv1x1(5), "swap": ChannelSwap()}
    return NormalizingFlow(Sequential(steps), StandardNormal((5,)))


def initialised(flow: NormalizingFlow, x: torch.Tensor) -> NormalizingFlow:
    """Run the data-dependent initialisation, perturb every parameter, switch to float64 eval mode."""
    torch.manual_seed(0)
    flow.train()
    flow.log_prob(x)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return flow.double().eval()


def test_log_prob_matches_brute_force_change_of_variables():
    """log p(x) = log N(T(x); 0, I) + log |det dT/dx| with the Jacobian of the whole transform by autograd."""
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)) * 2
    flow = initialised(vector_flow(), x)
    x = x.double()
    log_prob = flow.log_prob(x)
    for i in range(x.shape[0]):
        z = flow.transform(x[i:i + 1])[0][0]
        jacobian = torch.autograd.functional.jacobian(lambda v: flow.transform(v.view(1, 5))[0].reshape(-1), x[i])
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum() + torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(log_prob[i], expected, atol=1e-9, rtol=1e-9)


def test_multiscale_log_prob_is_the_exact_density_of_the_factored_model():
    """With a split, log p(x) = log|det J| of the bijective part + log N(kept) + log p(dropped | kept)."""
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    flow = initialised(multiscale_flow(), x)
    x = x.double()
    steps = flow.transform
    split = steps["split"]
    log_prob = flow.log_prob(x)
    for i in range(x.shape[0]):
        def bijective_part(v):
            h = steps["level0"](steps["squeeze"](v.view(1, 1, 4, 4))[0])[0]
            kept = steps["level1"](h[:, :2])[0]
            return torch.cat([kept, h[:, 2:]], dim=1).reshape(-1)

        jacobian = torch.autograd.functional.jacobian(bijective_part, x[i].reshape(-1))
        h = bijective_part(x[i].reshape(-1)).view(1, 4, 2, 2)
        kept_in = steps["level0"](steps["squeeze"](x[i:i + 1])[0])[0][:, :2]
        prior_params = split.conditioner(kept_in)
        mean, log_scale = prior_params[:, 0::2], prior_params[:, 1::2]
        expected = (torch.linalg.slogdet(jacobian).logabsdet + normal_log_prob(h[:, :2]).sum()
                    + normal_log_prob(h[:, 2:], mean, log_scale).sum())
        torch.testing.assert_close(log_prob[i], expected, atol=1e-9, rtol=1e-9)


def test_log_likelihood_terms_and_bits_per_dim_by_hand():
    terms = LogLikelihood(prior=torch.tensor([-60.0]), log_det=torch.tensor([-50.0]),
                          dequantization=torch.tensor([10.0]), num_dims=10)
    assert terms.total.item() == -100.0
    assert terms.bits_per_dim.item() == pytest.approx(100 / (10 * math.log(2)))  # 14.4269504...
    assert bits_per_dim(torch.tensor([-100.0]), 10).item() == pytest.approx(14.426950408889634)
    # bins of width 2/256 on [-1, 1]: the discrete likelihood gains log2(256/2) = 7 bits per dimension
    assert bits_per_dim(torch.tensor([-100.0]), 10, log_bin_width=math.log(2 / 256)).item() == pytest.approx(
        14.426950408889634 + 7)


def dequantized_conditional_flow(num_classes: int = 3) -> NormalizingFlow:
    transform = Sequential({"augment": Augment(1, LabelConvNet(1, 2, num_classes)),
                            "step": Sequential(ActNorm(2), AffineCoupling(LabelConvNet(1, 2, num_classes))),
                            "squeeze": Squeeze()})
    return NormalizingFlow(transform, ClassConditionalGaussian((8, 2, 2), num_classes),
                           UniformDequantization(5, -1.0, 1.0), data_shape=(1, 4, 4))


def test_flow_with_dequantizer_keeps_the_terms_apart():
    flow = dequantized_conditional_flow()
    x = torch.randint(0, 5, (4, 1, 4, 4)).float()
    labels = torch.tensor([0, 1, 2, 1])
    terms = flow.log_prob_terms(x, labels, noise=torch.Generator().manual_seed(0))
    _, dequantization = flow.dequantizer(x)
    assert torch.equal(terms.dequantization, dequantization)
    assert torch.equal(terms.dequantization, torch.full((4,), 16 * math.log(2 / 5)))
    assert terms.num_dims == 16
    z = flow.transform_to_latent(x, labels, noise=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms.prior, flow.prior.log_prob(z, labels))
    samples = flow.sample(4, labels, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 4, 4)
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= 4


def test_importance_weighted_log_prob_is_at_least_the_mean_bound():
    torch.manual_seed(0)
    flow = dequantized_conditional_flow()
    x, labels = torch.randint(0, 5, (3, 1, 4, 4)).float(), torch.tensor([0, 1, 2])
    estimate = importance_weighted_log_prob(flow, x, labels, num_samples=8, noise=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bounds = torch.stack([flow.log_prob(x, labels, noise=generator) for _ in range(8)])
    torch.testing.assert_close(estimate, torch.logsumexp(bounds, 0) - math.log(8))
    assert bool((estimate >= bounds.mean(0)).all()) and bool((estimate > bounds.mean(0) + 1e-3).all())


def test_importance_weighted_log_prob_equals_log_prob_for_bijective_flows():
    flow = vector_flow().eval()
    x = torch.randn(3, 5)
    torch.testing.assert_close(importance_weighted_log_prob(flow, x, num_samples=4), flow.log_prob(x).detach())


def test_intermediates_returns_every_named_step():
    flow = multiscale_flow()
    outputs = flow.intermediates(torch.randn(2, 1, 4, 4), names=["squeeze", "level0.coupling", "split"])
    assert [tuple(v.shape) for v in outputs.values()] == [(2, 4, 2, 2), (2, 4, 2, 2), (2, 2, 2, 2)]


def test_bad_input_is_an_error():
    flow = vector_flow()
    with pytest.raises(ValueError, match=r"NormalizingFlow expects data of shape \(batch, 5\), got \(2, 4\)"):
        flow.log_prob(torch.randn(2, 4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        flow.log_prob(torch.tensor([[0.0, 1.0, float("nan"), 0.0, 0.0]]))


@pytest.mark.parametrize("make, shape", [(vector_flow, (4, 5)), (multiscale_flow, (3, 1, 4, 4))])
def test_conformance(make, shape):
    torch.manual_seed(0)
    check_flow(make(), torch.randn(shape))


def test_conformance_conditional_with_dequantizer():
    torch.manual_seed(0)
    check_flow(dequantized_conditional_flow(), torch.randint(0, 5, (3, 1, 4, 4)).float(),
               context=torch.tensor([2, 0, 1]))
