"""Attention backends agree: PyTorch SDPA, the plain reference and (on a GPU with flash-attn) FlashAttention."""

from __future__ import annotations

import importlib.util
import types

import pytest
import torch

import nfkit_core.plugins.manager as manager_module
from nfkit_core.attention import sdpa_attention
from nfkit_core.errors import UnknownNameError
from nfkit_core.plugins import AttentionBackend, PluginManager, hookimpl
from nfkit_core.specs import DataInfo
from nfkit_tarflow import TarFlowConfig, build_tarflow
from nfkit_tarflow import plugin as tarflow_plugin
from nfkit_tarflow.transformer import AttentionBlock, LayerKVCache

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def run(flow, backend: str, x, labels):
    flow.set_attention_backend(backend)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.is_cuda):
        z = flow.transform_to_latent(x, labels)
        samples = flow.sample(x.shape[0], labels, generator=torch.Generator(device=x.device).manual_seed(0),
                              guidance=1.0, attn_temp=0.9)
    return z, samples


def test_sdpa_and_reference_agree(make_flow):
    flow = make_flow(num_classes=3)
    x, labels = torch.randn(3, 2, 8, 8), torch.tensor([0, 1, -1])
    z_ref, samples_ref = run(flow, "reference", x, labels)
    for backend in ("sdpa", "auto"):
        z, samples = run(flow, backend, x, labels)
        torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(samples, samples_ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "reference", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decoding_step_equals_the_layers_forward(backend, dtype):
    """``AttentionBlock.step`` (one query over the cached keys, the query shorter than the keys) computes the row of
    the full causal forward at its position, with and without an attention temperature."""
    torch.manual_seed(0)
    layer = AttentionBlock(channels=32, head_dim=8, backend=backend).to(dtype)
    x = torch.randn(3, 6, 32, dtype=dtype)
    temperature = torch.tensor([1.0, 0.7, 1.3], dtype=dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    with torch.no_grad():
        for tau in (None, temperature):
            full = layer(x, tau)
            cache = LayerKVCache(max_tokens=6)
            steps = torch.stack([layer.step(x[:, i], tau, cache, i) for i in range(6)], dim=1)
            torch.testing.assert_close(steps, full, rtol=0, atol=tolerance)


def test_unknown_backend_is_a_clear_error(make_flow):
    flow = make_flow()
    with pytest.raises(KeyError,
                       match="unknown attention backend 'nope'; available: auto, flash, flash3, reference, sdpa"):
        flow.set_attention_backend("nope")


@requires_cuda
def test_bf16_autocast_on_gpu_stays_close_to_fp32(make_flow):
    flow = make_flow(num_classes=3).cuda()
    x, labels = torch.randn(4, 2, 8, 8, device="cuda"), torch.tensor([0, 1, 2, -1], device="cuda")
    flow.set_attention_backend("sdpa")
    with torch.no_grad():
        full = flow.log_prob(x, labels)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            mixed = flow.log_prob(x, labels)
            z = flow.transform_to_latent(x, labels)
            samples = flow.sample(4, labels, generator=torch.Generator(device="cuda").manual_seed(0), guidance=1.0)
    assert mixed.dtype == torch.float32 and z.dtype == torch.float32 and samples.dtype == torch.float32
    torch.testing.assert_close(mixed, full, rtol=2e-2, atol=0.5)
    assert torch.isfinite(samples).all()


@requires_cuda
@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn is not installed")
def test_flash_agrees_with_sdpa_in_bf16(make_flow):
    flow = make_flow(num_classes=3, shape=(2, 16, 16)).cuda()
    x, labels = torch.randn(4, 2, 16, 16, device="cuda"), torch.tensor([0, 1, 2, -1], device="cuda")
    z_sdpa, samples_sdpa = run(flow, "sdpa", x, labels)
    z_flash, samples_flash = run(flow, "flash", x, labels)
    torch.testing.assert_close(z_flash, z_sdpa, rtol=0, atol=2e-2)
    torch.testing.assert_close(samples_flash, samples_sdpa, rtol=0, atol=5e-2)


def test_the_backend_is_resolved_when_the_model_is_built_not_at_each_call(make_flow, monkeypatch):
    flow = make_flow(num_classes=3)
    lookups = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda *args, **kwargs: lookups.append(args))
    monkeypatch.setattr(manager_module, "get_registry", lambda: pytest.fail("attention looked up the registry"))
    with torch.no_grad():
        flow.log_prob(torch.randn(2, 2, 8, 8), torch.tensor([0, 1]))
        flow.sample(2, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(0))
    assert lookups == []


def test_a_plugins_backend_is_found_by_name_when_tarflow_is_built_through_the_registry(make_flow):
    queries = []

    def counting(q, k, v, causal=False, scale=None):
        queries.append((q.shape[-2], k.shape[-2]))
        return sdpa_attention(q, k, v, causal=causal, scale=scale)

    backends = types.ModuleType("counting_backend")
    backends.nf_register_attention_backends = hookimpl(
        lambda attention_backends: attention_backends.add(AttentionBackend("counting", counting)))
    manager = PluginManager(autoload=False)
    manager.register(tarflow_plugin, "tarflow")
    manager.register(backends, "counting")
    config = TarFlowConfig(patch_size=2, channels=32, num_blocks=2, layers_per_block=2, head_dim=16,
                           attention_backend="counting")
    flow = manager.registry.build_flow("tarflow", config, DataInfo((2, 8, 8)))
    reference = make_flow()  # the same configuration with the default backend
    flow.load_state_dict(reference.state_dict())
    flow.eval()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), reference.log_prob(x), rtol=0, atol=1e-5)
        assert queries == [(15, 15)] * 4  # 2 blocks x 2 layers, 16 patches (no prediction reads the last one)
        queries.clear()
        samples = flow.sample(2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, reference.sample(2, generator=torch.Generator().manual_seed(0)), rtol=0,
                               atol=1e-5)
    assert any(tq == 1 < tk for tq, tk in queries)  # cached decoding: one query over all keys so far
    with pytest.raises(UnknownNameError, match="unknown attention backend 'counting'"):
        build_tarflow(config, DataInfo((2, 8, 8)))  # outside the registry only the built-ins are known
