"""Fixed permutations of the channels (dim 1): volume preserving, log-det 0.

Alternating which channels a coupling layer transforms needs one of these between couplings (Real NVP; Glow section
3.2; MAF).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nfkit_core.transform import Transform
from nfkit_core.validation import check_channels

__all__ = ["Permutation", "RandomPermutation", "Reverse", "ChannelSwap"]


class Permutation(Transform):
    """``z[:, i] = x[:, permutation[i]]`` for a given permutation of the ``C`` channels.

    Args:
        permutation: a permutation of ``0 .. C - 1``.

    Raises:
        ValueError: ``permutation`` is not a permutation.
    """

    def __init__(self, permutation: Tensor) -> None:
        super().__init__()
        permutation = torch.as_tensor(permutation, dtype=torch.long)
        if not torch.equal(permutation.sort().values, torch.arange(len(permutation))):
            raise ValueError(f"not a permutation of 0..{len(permutation) - 1}: {permutation.tolist()}")
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", permutation.argsort())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_channels(type(self).__name__, x, len(self.permutation))
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        check_channels(type(self).__name__, z, len(self.permutation))
        return z[:, self.inverse_permutation], z.new_zeros(z.shape[0])


class RandomPermutation(Permutation):
    """A random permutation of ``num_features`` channels, fixed by ``seed`` (and saved in the state dict).

    Args:
        num_features: the number of channels ``C``.
        seed: seeds the permutation.
    """

    def __init__(self, num_features: int, seed: int = 0) -> None:
        super().__init__(torch.randperm(int(num_features), generator=torch.Generator().manual_seed(seed)))


class Reverse(Transform):
    """Reverse the order of the channels (Real NVP, Glow's "reverse" permutation); works for any ``C``."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.flip(1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        return z.flip(1), z.new_zeros(z.shape[0])


class ChannelSwap(Transform):
    """Swap the two halves of the channels: ``(x_1, x_2) -> (x_2, x_1)`` with ``x_1`` the first ``C // 2``."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        first, second = x.split([x.shape[1] // 2, x.shape[1] - x.shape[1] // 2], dim=1)
        return torch.cat([second, first], dim=1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        second, first = z.split([z.shape[1] - z.shape[1] // 2, z.shape[1] // 2], dim=1)
        return torch.cat([first, second], dim=1), z.new_zeros(z.shape[0])
