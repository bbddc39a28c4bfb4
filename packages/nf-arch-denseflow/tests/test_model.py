"""The DenseFlow model: registration, conformance, both likelihood bounds, training, presets and errors."""

from __future__ import annotations

import math

import pytest
import torch

import nfkit_core
from nfkit_core import noise
from nfkit_core.plugins import DataInfo, get_registry
from nfkit_core.testing import check_flow
from nfkit_denseflow import PRESETS, DenseFlow, DenseFlowConfig, build_denseflow

DIGITS = DataInfo(shape=(1, 8, 8), num_classes=10, num_bins=17)


def digits_levels(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 17, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed)).float()


def tiny_flow(**overrides) -> DenseFlow:
    torch.manual_seed(0)
    return build_denseflow(DenseFlowConfig(**{**PRESETS["digits-tiny"], **overrides}), DIGITS)


def trained_looking(flow: DenseFlow, x: torch.Tensor, scale: float = 0.05) -> DenseFlow:
    """Initialise ActNorm on ``x`` and move every parameter off its (often zero) initial value."""
    flow.train()
    flow.log_prob(x)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return flow.eval()


def test_registered_with_presets():
    spec = get_registry().architectures.get("denseflow")
    assert spec.config_class is DenseFlowConfig
    assert set(spec.presets) >= {"denseflow-74-10", "denseflow-45-6", "cifar10", "digits", "digits-tiny"}
    assert spec.presets["cifar10"] == spec.presets["denseflow-74-10"]
    config = spec.make_config("digits", growth_rate=4)
    assert config.growth_rate == 4 and config.units_per_block == (2, 2)
    assert isinstance(spec.build(config, DIGITS), DenseFlow)


def parameter_count(preset: str, data_shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Parameters of a preset's model, built on the meta device (no memory, no initialisation arithmetic)."""
    with torch.device("meta"):
        flow = DenseFlow(DenseFlowConfig(**PRESETS[preset]), data_shape, 256)
    return sum(p.numel() for p in flow.parameters())


@pytest.mark.parametrize(("preset", "units", "modules", "growth", "count", "official"), [
    ("denseflow-74-10", (6, 4, 1), (5, 6, 20), 10, 130_656_534, 130_647_294),
    ("denseflow-45-6", (5, 3, 1), (3, 5, 15), 6, 75_025_562, 75_020_522),
])
def test_paper_presets_have_the_papers_layout_and_size(preset, units, modules, growth, count, official):
    """The numbers stated in the presets' comments; ``official``: the official code with the same arguments."""
    config = DenseFlowConfig(**PRESETS[preset])
    assert (config.units_per_block, config.modules_per_unit, config.growth_rate) == (units, modules, growth)
    assert config.mid_channels == (48, 48, 48) and config.num_modules == int(preset.split("-")[1])
    assert (config.lu, config.dequantization) == (False, "variational")
    assert parameter_count(preset) == count
    assert abs(count - official) / official < 1e-3


def test_cifar10_preset_is_denseflow_74_10():
    assert PRESETS["cifar10"] is PRESETS["denseflow-74-10"]


def test_cifar_sized_model_shapes():
    """DenseFlow-74-10's layout on 3x32x32: 12 -> 62 channels at 16x16, 124 -> 154 at 8x8, 308 at 4x4."""
    layout = {**PRESETS["denseflow-74-10"], "modules_per_unit": (1, 1, 1), "mid_channels": (4, 4, 4),
              "dense_depth": 1, "dense_growth": 4, "dequantization_steps": 1}
    flow = build_denseflow(DenseFlowConfig(**layout), DataInfo((3, 32, 32), num_bins=256))
    assert flow.prior.event_shape == (308, 4, 4)
    assert [flow.transform[f"block{b}"].out_channels for b in range(3)] == [62, 154, 308]


def test_flow_conformance():
    check_flow(tiny_flow(), digits_levels())


def test_samples_are_levels_and_context_is_ignored():
    flow = trained_looking(tiny_flow(), digits_levels())
    samples = flow.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 8, 8)
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= 16
    x = digits_levels()
    labels = torch.arange(4)
    torch.testing.assert_close(flow.log_prob(x, labels, noise=torch.Generator().manual_seed(0)),
                               flow.log_prob(x, noise=torch.Generator().manual_seed(0)))


def test_importance_weighting_tightens_the_bound():
    """Over many noise draws, the K-sample importance-weighted estimate lies above the single-sample bound."""
    flow = trained_looking(tiny_flow(), digits_levels(), scale=0.2)
    x = digits_levels(3, seed=1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        single = torch.stack([flow.log_prob(x, noise=generator) for _ in range(64)])
        importance_weighted = torch.stack([nfkit_core.importance_weighted_log_prob(
            flow, x, num_samples=8, sample_batch_size=4, noise=generator) for _ in range(8)])
    assert single.std(dim=0).min() > 0  # the bound is stochastic
    gap = importance_weighted.mean(dim=0) - single.mean(dim=0)
    standard_error = single.std(dim=0) / math.sqrt(single.shape[0]) + importance_weighted.std(dim=0) / math.sqrt(8)
    assert (gap > -2 * standard_error).all()
    assert gap.mean() > 0
    bits = flow.evaluate_bits_per_dim(x, num_samples=16, sample_batch_size=16, noise=generator)
    assert (bits["importance_weighted"] <= bits["bound"]).all()


def test_both_bounds_are_the_core_estimates():
    """``evaluate_bits_per_dim`` reports the core's importance-weighted estimate (DenseFlow has no bound of its own)."""
    flow = trained_looking(tiny_flow(), digits_levels(), scale=0.2)
    x = digits_levels(2)
    bits = flow.evaluate_bits_per_dim(x, num_samples=5, sample_batch_size=1, noise=torch.Generator().manual_seed(3))
    generic = nfkit_core.importance_weighted_log_prob(flow, x, num_samples=5, noise=torch.Generator().manual_seed(3))
    torch.testing.assert_close(bits["importance_weighted"], nfkit_core.bits_per_dim(generic, flow.num_dims))
    one = nfkit_core.importance_weighted_log_prob(flow, x, num_samples=1, noise=torch.Generator().manual_seed(3))
    torch.testing.assert_close(one, flow.log_prob(x, noise=torch.Generator().manual_seed(3)))
    assert not hasattr(flow, "importance_weighted_log_prob")


def test_a_few_training_steps_lower_the_loss():
    flow = tiny_flow()
    x = digits_levels(8)
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    flow.train()
    losses = []
    for step in range(12):
        loss = flow.bits_per_dim(x, noise=torch.Generator().manual_seed(step)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


def test_uniform_dequantization_option():
    flow = tiny_flow(dequantization="uniform")
    x = digits_levels()
    log_prob = flow.log_prob(x, noise=torch.Generator().manual_seed(0))
    # an untrained flow on uniform noise is far from the data: just finite, and counted in bits of 17 levels
    assert torch.isfinite(log_prob).all()
    assert flow.dequantizer.bin_width == pytest.approx(1 / 17)


def test_bf16_autocast_matches_float32():
    flow = trained_looking(tiny_flow(), digits_levels())
    x = digits_levels()
    with torch.no_grad():
        full = flow.log_prob(x, noise=torch.Generator().manual_seed(0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = flow.log_prob(x, noise=torch.Generator().manual_seed(0))
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), full, rtol=5e-3, atol=0)


def test_bad_data_and_configs_are_reported():
    with pytest.raises(ValueError, match="num_bins"):
        build_denseflow(DenseFlowConfig(**PRESETS["digits-tiny"]), DataInfo((1, 8, 8)))
    with pytest.raises(ValueError, match=r"images \(C, H, W\)"):
        build_denseflow(DenseFlowConfig(**PRESETS["digits-tiny"]), DataInfo((64,), num_bins=17))
    with pytest.raises(ValueError, match="divisible by 8"):
        build_denseflow(DenseFlowConfig(**PRESETS["denseflow-74-10"]), DataInfo((3, 12, 12), num_bins=256))
    with pytest.raises(ValueError, match="num_landmarks"):
        build_denseflow(DenseFlowConfig(**{**PRESETS["digits-tiny"], "num_landmarks": 3}), DIGITS)
    with pytest.raises(ValueError, match="one entry per block"):
        DenseFlowConfig(units_per_block=(2, 2), modules_per_unit=(1,), mid_channels=(8, 8))
    with pytest.raises(ValueError, match="attention"):
        DenseFlowConfig(attention="linear")
    with pytest.raises(ValueError, match="dequantization"):
        DenseFlowConfig(dequantization="none")
    with pytest.raises(ValueError, match="growth_rate"):
        DenseFlowConfig(growth_rate=0)
    flow = tiny_flow()
    with pytest.raises(ValueError, match=r"\(batch, 1, 8, 8\)"):
        flow.log_prob(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 17\)"):
        flow.log_prob(torch.full((2, 1, 8, 8), 17.0))
    with pytest.raises(ValueError, match="num_samples"):
        flow.evaluate_bits_per_dim(digits_levels(), num_samples=0)


def test_replayed_noise_reproduces_log_prob():
    flow = trained_looking(tiny_flow(), digits_levels())
    x = digits_levels()
    with noise.use(noise.Record()) as record:
        first = flow.log_prob(x)
    assert [tuple(d.shape) for d in record.draws] == [(4, 4, 4, 4), (4, 2, 4, 4)]
    torch.testing.assert_close(flow.log_prob(x, noise=noise.Replay(record.draws)), first, rtol=0, atol=0)


def test_denseflow_is_a_normalizing_flow_that_overrides_none_of_the_contract():
    from nfkit_core import Flow, NormalizingFlow

    for name in ("log_prob_terms", "log_prob", "transform_to_latent", "latent_to_data", "sample", "intermediates"):
        assert getattr(DenseFlow, name) is getattr(NormalizingFlow, name), name
    flow = tiny_flow()
    assert isinstance(flow, Flow) and (flow.dequantizes, flow.noise_std) == (True, 0.0)


def test_the_dequantizer_context_network_follows_the_config():
    """Its dense blocks had a hard-coded depth 4 and growth 16 (the official sizes, still the defaults)."""
    def dense_blocks(flow):
        net = flow.dequantizer.context_net
        return [(len(net[i].layers), net[i].layers[0].conv.out_channels) for i in (1, 3)]

    assert dense_blocks(tiny_flow()) == [(4, 16), (4, 16)]
    assert dense_blocks(tiny_flow(dequantization_context_depth=2, dequantization_context_growth=4)) == [(2, 4), (2, 4)]
    flow = tiny_flow(dequantization_context_depth=1, dequantization_context_growth=3)
    check_flow(flow, digits_levels(3))


def test_user_context_reaches_the_conditioning_and_the_dequantizer_features_reach_its_couplings():
    """A conditional flow built on DenseFlow's parts: the labels condition the prior only; the dequantizer's couplings
    get the features of x (their half joined with ``dequantization_context_channels`` channels), never the labels."""
    x = digits_levels()
    flow = trained_looking(tiny_flow(), x)
    prior = nfkit_core.ClassConditionalGaussian(flow.prior.event_shape, num_classes=10)
    with torch.no_grad():
        for p in prior.parameters():
            p.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(2))
    conditional = nfkit_core.NormalizingFlow(flow.transform, prior, flow.dequantizer, data_shape=flow.data_shape)
    seen = []
    couplings = [step for name, step in flow.dequantizer.encoder.transforms.items() if name.startswith("coupling")]
    hooks = [c.conditioner.register_forward_pre_hook(lambda _, args: seen.append([a.shape[1] for a in args]))
             for c in couplings]
    labels_a, labels_b = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    try:
        terms_a = conditional.log_prob_terms(x, labels_a, noise=torch.Generator().manual_seed(3))
        terms_b = conditional.log_prob_terms(x, labels_b, noise=torch.Generator().manual_seed(3))
    finally:
        for hook in hooks:
            hook.remove()
    half = 4 * flow.data_shape[0] // 2
    assert seen == [[half + flow.config.dequantization_context_channels]] * (2 * len(couplings))
    assert torch.equal(terms_a.dequantization, terms_b.dequantization)
    assert torch.equal(terms_a.log_det, terms_b.log_det)
    assert (terms_a.prior - terms_b.prior).abs().min() > 1e-3
    unconditional = flow.log_prob(x, noise=torch.Generator().manual_seed(3))
    torch.testing.assert_close(flow.log_prob(x, labels_a, noise=torch.Generator().manual_seed(3)), unconditional)
