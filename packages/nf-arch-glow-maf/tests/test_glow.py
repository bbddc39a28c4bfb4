"""Glow: its networks and steps follow openai/glow, and steps, levels and flows pass the conformance suite."""

import math

import pytest
import torch
import torch.nn.functional as F

from nfkit_core import ClassConditionalGaussian, StandardNormal
from nfkit_core.layers import Split
from nfkit_core.plugins import DataInfo
from nfkit_core.priors import normal_log_prob
from nfkit_core.testing import check_flow, check_transform
from nfkit_glow_maf import (
    GlowConditioner,
    GlowConfig,
    GlowConv2d,
    LearnedTopPrior,
    ZeroConv2d,
    build_glow,
    glow_step,
)
from nfkit_glow_maf.glow import PRESETS as GLOW_PRESETS

# The conformance suite perturbs every parameter. Glow's zero-initialised output convolutions scale by exp(3 logs) and
# feed sigmoid(h + 2), so its default perturbation (0.1) can make scales of 1e-8, whose inverses overflow in float32;
# 0.05 still moves every parameter away from its initial value.
PERTURB = 0.05


def perturb(module, scale=0.1):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def test_edge_bias_is_openai_glow_add_edge_padding():
    """Zero padding plus a border-indicator input channel, then a 'valid' convolution (tfops.add_edge_padding)."""
    torch.manual_seed(0)
    conv = GlowConv2d(3, 5, 3, bias=True, edge_bias=True)
    perturb(conv)
    x = torch.randn(2, 3, 4, 6)
    padded = F.pad(x, (1, 1, 1, 1))
    border = F.pad(torch.zeros(2, 1, 4, 6), (1, 1, 1, 1), value=1.0)
    weight = torch.cat([conv.weight, conv.edge_weight], dim=1)
    torch.testing.assert_close(conv(x), F.conv2d(torch.cat([padded, border], dim=1), weight, conv.bias))


def test_zero_conv_starts_at_zero_and_scales_by_exp_3_logs():
    conv = ZeroConv2d(4, 6)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(conv(x), torch.zeros(2, 6, 5, 5))
    perturb(conv)
    unscaled = GlowConv2d.forward(conv, x)
    torch.testing.assert_close(conv(x), unscaled * torch.exp(3 * conv.logs).view(1, -1, 1, 1))


def test_conditioner_initialises_its_actnorms_and_outputs_zero():
    net = GlowConditioner(2, 4, 16)
    out = net(torch.randn(8, 2, 4, 4) * 5 + 3)
    assert torch.equal(out, torch.zeros(8, 4, 4, 4))
    assert bool(net.norm1.initialized) and bool(net.norm2.initialized)


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_step_follows_openai_revnet2d_step(coupling):
    torch.manual_seed(0)
    step = glow_step(4, GlowConfig(hidden_channels=8, coupling=coupling))
    x = torch.randn(3, 4, 4, 4)
    step(x)  # data-dependent initialisation
    perturb(step)
    actnorm, mixing, couple = step["actnorm"], step["permutation"], step["coupling"]

    h = (x + actnorm.shift.view(1, -1, 1, 1)) * actnorm.log_scale.exp().view(1, -1, 1, 1)
    log_det = actnorm.log_scale.sum() * 16
    weight = mixing.matrix()
    h = F.conv2d(h, weight[:, :, None, None])
    log_det = log_det + torch.linalg.slogdet(weight).logabsdet * 16
    z1, z2 = h[:, :2], h[:, 2:]
    out = couple.conditioner(z1)
    if coupling == "affine":
        shift, scale = out[:, 0::2], torch.sigmoid(out[:, 1::2] + 2.0)
        z2 = (z2 + shift) * scale
        log_det = log_det + torch.log(scale).sum(dim=(1, 2, 3))
    else:
        z2 = z2 + out

    z, step_log_det = step(x)
    torch.testing.assert_close(z, torch.cat([z1, z2], dim=1))
    torch.testing.assert_close(step_log_det, log_det.expand(3), rtol=1e-5, atol=1e-4)


def test_split_follows_openai_split2d():
    torch.manual_seed(0)
    flow = build_glow(GlowConfig(num_levels=2, steps_per_level=1, hidden_channels=8), DataInfo((1, 4, 4)))
    split = flow.transform["level0"]["split"]
    assert isinstance(split, Split)
    perturb(split)
    h = torch.randn(3, 4, 2, 2)
    kept, log_det = split(h)
    prior = split.conditioner(h[:, :2])
    expected = normal_log_prob(h[:, 2:], prior[:, 0::2], prior[:, 1::2]).sum(dim=(1, 2, 3))
    torch.testing.assert_close(kept, h[:, :2])
    torch.testing.assert_close(log_det, expected)


@pytest.mark.parametrize("config", [
    GlowConfig(hidden_channels=8),
    GlowConfig(hidden_channels=8, coupling="additive", permutation="reverse"),
    GlowConfig(hidden_channels=8, permutation="shuffle", edge_bias=False),
    GlowConfig(hidden_channels=8, lu=False),
])
def test_steps_conform(config):
    def make():
        torch.manual_seed(0)
        return glow_step(4, config, index=1)
    errors = check_transform(make, torch.randn(3, 4, 4, 4), perturb=PERTURB)
    assert errors["log_det_vs_jacobian"] < 1e-8


def test_levels_with_and_without_split_conform():
    def make(level):
        def build():
            torch.manual_seed(0)
            flow = build_glow(GlowConfig(num_levels=2, steps_per_level=2, hidden_channels=8), DataInfo((2, 4, 4)))
            return flow.transform[level]
        return build
    check_transform(make("level0"), torch.randn(3, 2, 4, 4), perturb=PERTURB)  # squeeze, steps, split (stochastic)
    errors = check_transform(make("level1"), torch.randn(3, 4, 2, 2), perturb=PERTURB)  # squeeze, steps: a bijection
    assert errors["log_det_vs_jacobian"] < 1e-8


@pytest.mark.parametrize("config,data,context", [
    (GlowConfig(**GLOW_PRESETS["digits-tiny"]), DataInfo((1, 8, 8), num_bins=17), None),
    (GlowConfig(num_levels=3, steps_per_level=2, hidden_channels=8), DataInfo((3, 8, 8), num_classes=4),
     torch.tensor([0, 3, 1, 2])),
    (GlowConfig(num_levels=1, steps_per_level=2, hidden_channels=8, coupling="additive", learn_top=True,
                edge_bias=False), DataInfo((2, 4, 6)), None),
])
def test_glow_flows_conform(config, data, context):
    torch.manual_seed(0)
    flow = build_glow(config, data)
    # openai/glow's learned top prior convolves an all-zero input: its weights (not its bias) never get a gradient
    dead = ["prior.net.weight"] if isinstance(flow.prior, LearnedTopPrior) else []
    check_flow(flow, torch.rand(4, *data.shape) * 2 - 1, context, allow_zero_grad=dead)


def test_multi_scale_shapes_priors_and_intermediates():
    torch.manual_seed(0)
    flow = build_glow(GlowConfig(num_levels=3, steps_per_level=1, hidden_channels=8, learn_top=False),
                      DataInfo((3, 16, 16)))
    assert isinstance(flow.prior, StandardNormal) and flow.prior.event_shape == (48, 2, 2)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    outputs = flow.intermediates(x)
    assert {name: tuple(v.shape[1:]) for name, v in outputs.items()} == {
        "level0": (6, 8, 8), "level1": (12, 4, 4), "level2": (48, 2, 2)}
    before_split = flow.intermediates(x, names=["level0.steps", "level1.steps"])
    assert [tuple(v.shape[1:]) for v in before_split.values()] == [(12, 8, 8), (24, 4, 4)]
    torch.testing.assert_close(before_split["level0.steps"][:, :6], outputs["level0"])
    assert isinstance(build_glow(GlowConfig(num_levels=1, steps_per_level=1, hidden_channels=4),
                                 DataInfo((1, 2, 2))).prior, LearnedTopPrior)
    assert isinstance(build_glow(GlowConfig(num_levels=1, steps_per_level=1, hidden_channels=4),
                                 DataInfo((1, 2, 2), num_classes=3)).prior, ClassConditionalGaussian)


def test_the_untrained_flow_has_constant_coupling_scales_and_standard_normal_split_priors():
    """Zero-initialised networks: each coupling scales its half by sigmoid(2), each split prior is N(0, I)."""
    torch.manual_seed(0)
    flow = build_glow(GlowConfig(num_levels=2, steps_per_level=2, hidden_channels=8), DataInfo((1, 4, 4)))
    flow.eval()
    x = torch.randn(3, 1, 4, 4)
    h, log_det = x, torch.zeros(3)
    latents = []
    for name in ("level0", "level1"):
        level = flow.transform[name]
        h = level["squeeze"](h)[0]
        for step in level["steps"]:
            h = h * step["actnorm"].log_scale.exp().view(1, -1, 1, 1)  # shifts start at zero without data init
            h = torch.einsum("ij,bjhw->bihw", step["permutation"].matrix(), h)
            h = torch.cat([h[:, :h.shape[1] // 2], h[:, h.shape[1] // 2:] * torch.sigmoid(torch.tensor(2.0))], dim=1)
            log_det += (step["actnorm"].log_scale.sum() + step["permutation"].log_abs_det()) * h[0, 0].numel()
            log_det += math.log(torch.sigmoid(torch.tensor(2.0))) * h[0].numel() / 2
        if name == "level0":
            latents.append(h[:, 2:])
            h = h[:, :2]
    latents.append(h)
    expected = sum(normal_log_prob(z).sum(dim=(1, 2, 3)) for z in latents) + log_det
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_sampling_temperature_scales_every_latent_draw():
    torch.manual_seed(0)
    flow = build_glow(GlowConfig(num_levels=2, steps_per_level=2, hidden_channels=8, learn_top=False),
                      DataInfo((1, 8, 8)))
    flow.train()
    flow.log_prob(torch.rand(8, 1, 8, 8) * 2 - 1)
    perturb(flow, 0.05)
    flow.eval()
    cold = [flow.sample(2, temperature=0.0, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    torch.testing.assert_close(cold[0], cold[1])  # every draw is multiplied by 0: only the means remain
    draws = []
    with torch.no_grad():
        for temperature in (1.0, 0.5):
            from nfkit_core import noise

            record = noise.Record(noise.GeneratorNoise(torch.Generator().manual_seed(0)))
            with noise.use(record, temperature=temperature):
                z = flow.prior.sample(2)
                x = flow.transform.inverse(z)[0]
            draws.append((x, record.draws))
    # the same standard-normal draws, so the latents differ only by the temperature
    assert all(torch.equal(a, b) for a, b in zip(draws[0][1], draws[1][1]))
    latent_cold = flow.transform_to_latent(draws[1][0])
    latent_warm = flow.transform_to_latent(draws[0][0])
    torch.testing.assert_close(latent_cold, 0.5 * latent_warm, rtol=1e-4, atol=1e-4)


def test_presets_are_the_paper_configurations():
    assert GLOW_PRESETS["cifar10"] == {"num_levels": 3, "steps_per_level": 32, "hidden_channels": 512}
    assert GlowConfig() == GlowConfig(**GLOW_PRESETS["cifar10"])
    config = GlowConfig()
    assert (config.coupling, config.permutation, config.lu, config.edge_bias, config.learn_top) == (
        "affine", "conv1x1", False, True, True)  # openai/glow: --flow_coupling 1 --flow_permutation 2 --learntop
    flow = build_glow(GlowConfig(**GLOW_PRESETS["digits"]), DataInfo((1, 8, 8), num_classes=10, num_bins=17))
    assert flow.sample(2, torch.tensor([3, 7])).shape == (2, 1, 8, 8)
    assert math.isclose(flow.num_dims, 64)


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="divisible by 8"):
        build_glow(GlowConfig(num_levels=3), DataInfo((1, 12, 12)))
    with pytest.raises(ValueError, match=r"images of shape \(C, H, W\)"):
        build_glow(GlowConfig(), DataInfo((6,)))
    with pytest.raises(ValueError, match="coupling"):
        GlowConfig(coupling="spline")
    with pytest.raises(ValueError, match="permutation"):
        GlowConfig(permutation="random")
    with pytest.raises(ValueError, match="odd kernel"):
        GlowConv2d(2, 2, 2)


@pytest.mark.parametrize(("preset", "size", "count"), [
    ("cifar10", 32, 44_603_604),
    ("imagenet32", 32, 66_861_588),
    ("imagenet64", 64, 112_377_540),
    ("lsun64", 64, 112_377_540),
    ("celeba-hq-256", 256, 230_971_044),
])
def test_paper_presets_have_openai_glows_parameter_count(preset, size, count):
    """The counts stated in the presets' comment: the variables openai/glow's model.py creates for the same layout
    (for cifar10, its README's CIFAR-10 command)."""
    with torch.device("meta"):
        flow = build_glow(GlowConfig(**GLOW_PRESETS[preset]), DataInfo((3, size, size), num_bins=256))
    assert sum(p.numel() for p in flow.parameters()) == count


def test_lu_convolutions_count_as_many_parameters_as_plain_ones():
    with torch.device("meta"):
        flow = build_glow(GlowConfig(**GLOW_PRESETS["cifar10"], lu=True), DataInfo((3, 32, 32), num_bins=256))
    assert sum(p.numel() for p in flow.parameters()) == 44_603_604
    assert sum(p.numel() for p in flow.prior.parameters()) == 9 * 97 * 96 + 96 + 96  # conv2d_zeros("p", 96 -> 96)


def test_learned_top_prior_is_openai_glows():
    """openai/glow: h = conv2d_zeros(zeros of 2C channels, 2C) with edge padding; mean = h[:C], logs = h[C:]."""
    torch.manual_seed(0)
    prior = LearnedTopPrior((2, 3, 3))
    perturb(prior, 0.3)
    pad = F.pad(torch.zeros(1, 4, 3, 3), (1, 1, 1, 1))
    border = F.pad(torch.zeros(1, 1, 3, 3), (1, 1, 1, 1), value=1.0)
    # the edge channel appended to the input, as add_edge_padding does
    weight = torch.cat([prior.net.weight, prior.net.edge_weight], dim=1)
    h = (F.conv2d(torch.cat([pad, border], dim=1), weight) + prior.net.bias.view(1, -1, 1, 1)) * torch.exp(
        3 * prior.net.logs).view(1, -1, 1, 1)
    z = torch.randn(5, 2, 3, 3)
    expected = normal_log_prob(z, h[:, :2], h[:, 2:]).sum(dim=(1, 2, 3))
    torch.testing.assert_close(prior.log_prob(z), expected)
    assert h[0, 0, 0, 0] != h[0, 0, 1, 1]  # the border sees the edge bias
