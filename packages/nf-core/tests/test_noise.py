"""nfkit_core.noise: seeding, recording, replaying, temperature."""

from __future__ import annotations

import pytest
import torch

from nfkit_core import noise
from nfkit_core.layers import Augment, Split, UniformDequantization


def draw_some() -> list[torch.Tensor]:
    return [noise.randn((2, 3)), noise.rand((4,)), noise.randn((1, 2, 2), dtype=torch.float64)]


def test_seeded_generator_is_reproducible_and_seeds_differ():
    with noise.use(torch.Generator().manual_seed(5)):
        first = draw_some()
    with noise.use(torch.Generator().manual_seed(5)):
        again = draw_some()
    with noise.use(torch.Generator().manual_seed(6)):
        other = draw_some()
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert first[2].dtype == torch.float64 and bool(((first[1] >= 0) & (first[1] < 1)).all())


def test_default_source_is_the_global_rng():
    torch.manual_seed(3)
    drawn = noise.randn((3,))
    torch.manual_seed(3)
    assert torch.equal(drawn, torch.randn(3))


def test_record_then_replay_is_bit_identical_through_layers():
    x = torch.randint(0, 8, (2, 2, 4, 4)).float()
    layers = [UniformDequantization(8), Augment(2), Split(2)]

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        y, log_det = layers[0](x)
        y, more = layers[1](y)
        z, even_more = layers[2](y)
        sample, _ = layers[2].inverse(z)
        return sample, log_det + more + even_more

    with noise.use(noise.Record()) as record:
        expected = run()
    assert [tuple(d.shape) for d in record.draws] == [(2, 2, 4, 4), (2, 2, 4, 4), (2, 2, 4, 4)]
    replay = noise.Replay(record.draws)
    with noise.use(replay):
        replayed = run()
    replay.check_exhausted()
    assert torch.equal(replayed[0], expected[0]) and torch.equal(replayed[1], expected[1])


def test_replay_rejects_a_shape_mismatch_running_out_and_leftovers():
    draws = [torch.zeros(2, 3), torch.zeros(4)]
    with noise.use(noise.Replay(draws)), pytest.raises(
            ValueError, match=r"noise replay draw #0 has shape \(2, 3\), but the layer asked for \(3, 3\)"):
        noise.randn((3, 3))
    replay = noise.Replay(draws)
    with noise.use(replay):
        noise.randn((2, 3))
        noise.rand((4,))
        with pytest.raises(ValueError, match=r"ran out: draw #2 of shape \(1,\) was requested but only 2"):
            noise.randn((1,))
    with pytest.raises(ValueError, match="used 1 of 2 draws"):
        partial = noise.Replay(draws)
        with noise.use(partial):
            noise.randn((2, 3))
        partial.check_exhausted()


def test_temperature_and_nesting_restore_the_outer_state():
    assert noise.temperature() == 1.0
    generator = torch.Generator().manual_seed(0)
    with noise.use(generator, temperature=0.7) as outer:
        assert noise.temperature() == 0.7
        with noise.use(noise.Record()) as inner:
            assert noise.temperature() == 0.7
            noise.randn((1,))
        assert len(inner.draws) == 1
        assert noise.as_source(None) is outer
    assert noise.temperature() == 1.0
    assert isinstance(noise.as_source(None), noise.GlobalRNG)


def test_record_wraps_a_given_source_and_bad_sources_are_errors():
    record = noise.Record(noise.GeneratorNoise(torch.Generator().manual_seed(1)))
    with noise.use(record):
        drawn = noise.randn((2,))
    assert torch.equal(drawn, torch.randn(2, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(record.draws[0], drawn)
    with pytest.raises(TypeError, match="expected a NoiseSource or torch.Generator, got int"):
        noise.as_source(3)
