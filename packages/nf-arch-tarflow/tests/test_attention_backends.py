"""Attention backends agree: PyTorch SDPA, the plain reference and (on a GPU with flash-attn) FlashAttention."""

from __future__ import annotations

import importlib.util

import pytest
import torch

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


def test_unknown_backend_is_a_clear_error(make_flow):
    flow = make_flow()
    flow.set_attention_backend("nope")
    with pytest.raises(KeyError, match="unknown attention backend 'nope'"):
        flow.log_prob(torch.randn(1, 2, 8, 8))


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
