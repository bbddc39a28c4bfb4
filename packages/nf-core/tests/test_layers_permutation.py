"""Channel permutations: reverse, fixed random, swap of halves."""

from __future__ import annotations

import pytest
import torch

from nfkit_core.layers import ChannelSwap, Permutation, RandomPermutation, Reverse
from nfkit_core.testing import check_transform


@pytest.mark.parametrize("shape", [(3, 5), (3, 4, 2, 2)])
def test_conformance(shape):
    x = torch.randn(shape)
    for make in (Reverse, ChannelSwap, lambda: RandomPermutation(shape[1], seed=3)):
        check_transform(make, x)
    check_transform(Reverse, x, context=torch.randn(3, 2), uses_context=False)


def test_each_permutation_moves_the_channels_as_documented():
    x = torch.arange(5.0).view(1, 5)
    assert Reverse()(x)[0].tolist() == [[4, 3, 2, 1, 0]]
    assert ChannelSwap()(x)[0].tolist() == [[2, 3, 4, 0, 1]]
    assert Permutation(torch.tensor([2, 0, 1, 4, 3]))(x)[0].tolist() == [[2, 0, 1, 4, 3]]


def test_random_permutation_is_fixed_by_its_seed_and_saved():
    assert torch.equal(RandomPermutation(10, seed=1).permutation, RandomPermutation(10, seed=1).permutation)
    assert not torch.equal(RandomPermutation(10, seed=1).permutation, RandomPermutation(10, seed=2).permutation)
    loaded = RandomPermutation(10, seed=2)
    loaded.load_state_dict(RandomPermutation(10, seed=1).state_dict())
    assert torch.equal(loaded.permutation, RandomPermutation(10, seed=1).permutation)


def test_invalid_permutation_and_channel_mismatch_are_errors():
    with pytest.raises(ValueError, match="not a permutation"):
        Permutation(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"RandomPermutation expects input of shape \(batch, 4, ...\)"):
        RandomPermutation(4)(torch.randn(2, 3))
