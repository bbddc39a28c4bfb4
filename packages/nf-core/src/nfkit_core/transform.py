"""The contract every layer of every flow follows.

Direction
    ``forward`` is the *normalizing* direction, data -> latent. ``inverse`` is the *generative* direction.

Log-determinant
    Both directions return ``(output, log_det)`` where ``log_det`` has the batch shape: one number per sample, summed
    over all event dimensions, in nats. For a bijection ``forward`` returns ``log |det dz/dx|`` and ``inverse`` returns
    ``log |det dx/dz|``, so the two cancel on a round trip.

Stochastic layers
    Some layers of modern flows are not bijections: a factor-out split scores half of its input under a prior and
    drops it, a noise augmentation appends random channels, a dequantizer turns integers into reals. They follow the
    same signature, and their ``forward`` ``log_det`` is their contribution to the variational lower bound of
    ``log p(x)`` (Nielsen et al. 2020, "SurVAE Flows", eq. 5):

    * split: ``log p(z_dropped | z_kept)``;
    * augmentation with noise ``e ~ q(e | x)``: ``-log q(e | x)``;
    * dequantization ``y = x + u, u ~ q(u | x)``: ``-log q(u | x)``.

    Their randomness comes from :mod:`nfkit_core.noise`, which a caller can seed or replay. Such layers set
    ``is_bijective = False``.

Context
    ``context`` carries class labels or any other conditioning. Every layer takes it and passes it on, even if it
    ignores it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["Bijector", "Transform", "Sequential", "Inverse", "sum_except_batch"]


@runtime_checkable
class Bijector(Protocol):
    """Anything with a normalizing ``forward`` and a generative ``inverse``, each returning ``(output, log_det)``."""

    is_bijective: bool

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]: ...

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]: ...


class Transform(nn.Module):
    """Base class for layers: an :class:`torch.nn.Module` that follows the :class:`Bijector` contract.

    Subclasses implement :meth:`forward` and :meth:`inverse`. Set ``is_bijective = False`` for stochastic layers.
    """

    is_bijective: bool = True

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map data towards the latent: return ``(z, log_det)``."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map a latent towards data: return ``(x, log_det)``."""
        raise NotImplementedError


class Sequential(Transform):
    """Transforms applied one after another (``forward`` in order, ``inverse`` in reverse order).

    Give the transforms positionally (named ``"0"``, ``"1"``, ...) or as a mapping from name to transform; the names
    are how :meth:`nfkit_core.Flow.intermediates` refers to the output of each step.
    """

    def __init__(self, *transforms: Transform | Mapping[str, Transform]) -> None:
        super().__init__()
        if len(transforms) == 1 and isinstance(transforms[0], Mapping):
            named = dict(transforms[0])
        else:
            named = {str(i): t for i, t in enumerate(transforms)}
        self.transforms = nn.ModuleDict(named)
        self.is_bijective = all(getattr(t, "is_bijective", True) for t in named.values())

    def __len__(self) -> int:
        return len(self.transforms)

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.transforms.values())

    def __getitem__(self, key: int | str) -> Transform:
        if isinstance(key, int):
            return list(self.transforms.values())[key]
        return self.transforms[key]

    def names(self) -> list[str]:
        """The names of the steps, in forward order."""
        return list(self.transforms.keys())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for transform in self.transforms.values():
            x, log_det = transform(x, context)
            total = total + log_det
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[0])
        for transform in reversed(list(self.transforms.values())):
            z, log_det = transform.inverse(z, context)
            total = total + log_det
        return z, total


class Inverse(Transform):
    """Swap the two directions of a bijection (e.g. to use a generative-direction layer as a normalizing one)."""

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform
        self.is_bijective = transform.is_bijective

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, context)


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum a tensor over every dimension but the first (the usual reduction of element-wise log-dets)."""
    return x.reshape(x.shape[0], -1).sum(dim=1)

