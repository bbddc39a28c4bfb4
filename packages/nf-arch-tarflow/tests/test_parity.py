"""Parity with the official apple/ml-tarflow model, on outputs recorded from it.

The small fixtures in ``tests/fixtures`` (``tools/record_official_fixtures.py``) are always tested; the larger ones in
``shared/fixtures/reference`` where present.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nfkit_core import noise
from nfkit_core.testing import load_fixture, parity_fixture_paths
from nfkit_tarflow import TarFlow, from_official_state_dict

COMMITTED = Path(__file__).parent / "fixtures"
UNCONDITIONAL = parity_fixture_paths([COMMITTED / "tarflow_uncond_tiny.pt"], ["tarflow_uncond.pt"])
CONDITIONAL = parity_fixture_paths([COMMITTED / "tarflow_cond_tiny.pt"], ["tarflow_cond.pt"])


@pytest.fixture(scope="module", params=UNCONDITIONAL + CONDITIONAL, ids=lambda path: path.stem)
def reference(request) -> tuple[dict, TarFlow]:
    fixture = load_fixture(request.param)
    flow = from_official_state_dict(fixture["state_dict"], fixture["config"]).eval()
    return fixture, flow


def test_latents_and_block_outputs(reference):
    fixture, flow = reference
    with torch.no_grad():
        outputs = flow.intermediates(fixture["x"], fixture["y"])
    assert list(outputs) == ["patchify"] + [f"block{i}" for i in range(len(fixture["block_outputs"]))]
    for i, expected in enumerate(fixture["block_outputs"]):
        torch.testing.assert_close(outputs[f"block{i}"], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(flow.transform_to_latent(fixture["x"], fixture["y"]), fixture["z"], rtol=0, atol=1e-5)


def test_log_det_is_official_mean_times_dims(reference):
    fixture, flow = reference
    with torch.no_grad():
        terms = flow.log_prob_terms(fixture["x"], fixture["y"])
    num_dims = math.prod(fixture["x"].shape[1:])
    assert flow.num_dims == num_dims
    torch.testing.assert_close(terms.log_det, fixture["logdets"] * num_dims, rtol=1e-6, atol=1e-5)
    # official loss: 0.5 * mean(z^2) - mean(logdets) = -(log p(x) / N) averaged over the batch, minus log(2 pi) / 2
    nll_per_dim = -(terms.total / num_dims).mean() - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(nll_per_dim, fixture["loss"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("path", CONDITIONAL, ids=lambda path: path.stem)
def test_dropped_labels_use_the_mean_embedding(path):
    fixture = load_fixture(path)
    flow = from_official_state_dict(fixture["state_dict"], fixture["config"]).eval()
    assert (fixture["y_dropped"] == -1).any()
    with torch.no_grad():
        z = flow.transform_to_latent(fixture["x"], fixture["y_dropped"])
    torch.testing.assert_close(z, fixture["z_with_dropped_labels"], rtol=0, atol=1e-5)
    assert not torch.allclose(z, fixture["z"], atol=1e-4)


@pytest.mark.parametrize("kv_cache", [True, False], ids=["kv_cache", "naive"])
def test_samples_for_every_recorded_guidance_setting(reference, kv_cache):
    fixture, flow = reference
    assert len(fixture["samples"]) >= 3
    for name, recorded in fixture["samples"].items():
        replay = noise.Replay([fixture["noise"]])
        with noise.use(replay):
            x = flow.sample(fixture["noise"].shape[0], fixture["y"], kv_cache=kv_cache, **recorded["kwargs"])
        replay.check_exhausted()
        torch.testing.assert_close(x, recorded["x"], rtol=0, atol=1e-4, msg=f"samples {name!r}")


def test_reverse_sequence(reference):
    fixture, flow = reference
    sequence = fixture["reverse_sequence"]
    x = fixture["noise"]
    torch.testing.assert_close(flow.patchify.inverse(x)[0], sequence[0], rtol=0, atol=0)
    with torch.no_grad():
        for block, expected in zip(reversed(flow.blocks), sequence[1:]):
            x, _ = block.inverse(x, fixture["y"])
            torch.testing.assert_close(flow.patchify.inverse(x)[0], expected, rtol=0, atol=1e-4)


def test_denoising_step(reference):
    fixture, flow = reference
    recorded = fixture["denoise"]
    batch, num_dims = recorded["input"].shape[0], math.prod(recorded["input"].shape[1:])
    # the official step size is B * N * sigma^2 (see TarFlow.denoise)
    assert recorded["step_size"] == pytest.approx(batch * num_dims * recorded["noise_std"] ** 2)
    denoised = flow.denoise(recorded["input"], fixture["y"], noise_std=recorded["noise_std"])
    torch.testing.assert_close(denoised, recorded["output"], rtol=0, atol=1e-4)
    assert (denoised - recorded["input"]).abs().max() > 1e-4


def test_official_loader_rejects_unknown_keys_and_arguments():
    fixture = load_fixture(COMMITTED / "tarflow_uncond_tiny.pt")
    with pytest.raises(KeyError, match="unexpected key 'extra'"):
        from_official_state_dict({**fixture["state_dict"], "extra": torch.zeros(1)}, fixture["config"])
    with pytest.raises(ValueError, match="unknown official TarFlow arguments"):
        from_official_state_dict(fixture["state_dict"], {**fixture["config"], "width": 3})
    with pytest.raises(RuntimeError, match="Missing key"):
        state = {k: v for k, v in fixture["state_dict"].items() if not k.startswith("blocks.3.")}
        from_official_state_dict(state, fixture["config"])
