"""The TarFlow flow: plugin registration, presets, prior, label dropout, denoising, official VP checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from nfkit_core import noise
from nfkit_core.plugins import DataInfo, PluginManager
from nfkit_tarflow import (
    PRESETS,
    LearnedVarianceNormal,
    TarFlow,
    TarFlowConfig,
    build_tarflow,
    from_official_state_dict,
)
from nfkit_tarflow import plugin as tarflow_plugin


def test_plugin_registers_tarflow_with_presets():
    manager = PluginManager(autoload=False)
    manager.register(tarflow_plugin, "tarflow")
    spec = manager.registry.architectures.get("tarflow")
    assert spec.config_class is TarFlowConfig and spec.build is build_tarflow
    assert {"imagenet64", "imagenet128", "afhq256", "digits", "digits-tiny"} <= set(spec.presets)
    paper = {name: spec.make_config(name) for name in ("imagenet64", "imagenet128", "afhq256")}
    assert [(c.patch_size, c.channels, c.num_blocks, c.layers_per_block, c.noise_std) for c in paper.values()] == [
        (2, 768, 8, 8, 0.05), (4, 1024, 8, 8, 0.15), (8, 768, 8, 8, 0.07)]
    flow = spec.build(spec.make_config("digits"), DataInfo((1, 8, 8), num_classes=10, num_bins=17))
    assert isinstance(flow, TarFlow) and flow.num_classes == 10 and flow.noise_std == 0.1
    assert flow.prior.event_shape == (16, 4)
    unconditional = spec.build(spec.make_config("digits"), DataInfo((1, 8, 8), 0, 17))
    assert unconditional.num_classes == 0 and unconditional.blocks[0].class_embed is None


def test_build_rejects_non_images_and_bad_configs():
    with pytest.raises(ValueError, match=r"images of shape \(C, H, W\)"):
        build_tarflow(TarFlowConfig(**PRESETS["digits"]), DataInfo((6,)))
    with pytest.raises(ValueError, match="multiple of head_dim"):
        TarFlowConfig(channels=100, head_dim=64)
    with pytest.raises(ValueError, match="noise_std"):
        TarFlowConfig(noise_std=-0.1)


def test_fresh_model_log_prob_is_standard_normal_up_to_the_output_bias(make_flow):
    flow = TarFlow(TarFlowConfig(patch_size=2, channels=32, num_blocks=2, layers_per_block=1, head_dim=16), (1, 4, 4))
    for block in flow.blocks:
        torch.nn.init.zeros_(block.proj_out.bias)
    x = torch.randn(3, 1, 4, 4)
    expected = -0.5 * (x**2).sum(dim=(1, 2, 3)) - 8 * math.log(2 * math.pi)
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_unconditional_model_ignores_labels(small_flow):
    x = torch.randn(2, 2, 8, 8)
    assert torch.equal(small_flow.log_prob(x, torch.tensor([0, 5])), small_flow.log_prob(x))


def test_denoise_is_tweedie_step(conditional_flow):
    x, labels = torch.randn(2, 2, 8, 8), torch.tensor([1, -1])
    x_var = x.clone().requires_grad_(True)
    score = torch.autograd.grad(conditional_flow.log_prob(x_var, labels).sum(), x_var)[0]
    denoised = conditional_flow.denoise(x, labels, noise_std=0.1)
    torch.testing.assert_close(denoised, x + 0.01 * score)
    sampled = conditional_flow.sample(2, labels, generator=torch.Generator().manual_seed(0), denoise=True)
    raw = conditional_flow.sample(2, labels, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled, conditional_flow.denoise(raw, labels))


def test_volume_preserving_model_has_zero_log_det_and_learned_prior(make_flow):
    flow = make_flow(nvp=False)
    assert isinstance(flow.prior, LearnedVarianceNormal)
    x = torch.randn(3, 2, 8, 8)
    terms = flow.log_prob_terms(x)
    assert torch.equal(terms.log_det, torch.zeros(3))
    z = flow.transform_to_latent(x)
    log_scale = flow.prior.log_scale
    expected = (-0.5 * (z * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)).sum(dim=(1, 2))
    torch.testing.assert_close(terms.prior, expected)


def test_official_volume_preserving_checkpoint_loads_its_prior_variance():
    config = dict(in_channels=1, img_size=4, patch_size=2, channels=64, num_blocks=2, layers_per_block=1, nvp=False,
                  num_classes=0)
    reference = TarFlow(TarFlowConfig(patch_size=2, channels=64, num_blocks=2, layers_per_block=1, nvp=False),
                        (1, 4, 4))
    state = {key.replace("transform.transforms.block", "blocks."): value
             for key, value in reference.state_dict().items() if key.startswith("transform.")}
    state["var"] = torch.rand(4, 4) + 0.5
    flow = from_official_state_dict(state, config)
    torch.testing.assert_close(torch.exp(2 * flow.prior.log_scale), state["var"])
    eps = torch.randn(2, 4, 4)
    with noise.use(noise.Replay([eps])):
        z = flow.prior.sample(2)
    torch.testing.assert_close(z, eps * state["var"].sqrt())
    with pytest.raises(ValueError, match="var == 1"):
        from_official_state_dict(state, {**config, "nvp": True})


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    flow = TarFlow(TarFlowConfig(patch_size=2, channels=32, num_blocks=2, layers_per_block=1, head_dim=16),
                   (1, 4, 4), num_classes=2)
    data = torch.randn(32, 1, 4, 4) * torch.linspace(0.2, 2.0, 16).reshape(1, 1, 4, 4)
    labels = torch.arange(32) % 2
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    flow.train()
    losses = []
    for _ in range(20):
        loss = -flow.log_prob(data, labels).mean() / flow.num_dims
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2


def test_tarflow_is_a_normalizing_flow_that_overrides_none_of_the_contract(make_flow):
    """TarFlow only assembles its parts: likelihood, sampling and denoising are nfkit-core's, and guidance reaches the
    blocks as sampling options through ``Sequential.inverse``."""
    from nfkit_core import Flow, NormalizingFlow

    for name in ("log_prob_terms", "log_prob", "transform_to_latent", "latent_to_data", "sample", "intermediates",
                 "sampling_options", "score", "denoise", "forward"):
        assert getattr(TarFlow, name) is getattr(NormalizingFlow, name), name
    flow = make_flow(noise_std=0.3)
    assert isinstance(flow, Flow) and (flow.noise_std, flow.dequantizes) == (0.3, False)
    assert flow.sampling_options() == {"denoise", "guidance", "guide_what", "attn_temp", "annealed_guidance",
                                       "kv_cache", "sampler", "tolerance", "max_iterations"}
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['guidence'\]"):
        flow.sample(2, guidence=1.0)
