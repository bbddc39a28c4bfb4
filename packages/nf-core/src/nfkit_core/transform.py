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
    ``context`` carries conditioning only: class labels or any other input the modelled distribution depends on.
    Every layer takes it and passes it on, even if it ignores it.

Internal inputs
    Inputs that an architecture computes itself (the features of ``x`` that condition a variational dequantizer's
    encoder, DenseFlow's history of earlier units) never travel through ``context``. A layer that takes such inputs
    names them in :attr:`Transform.internal_inputs` and takes them as keywords of ``forward`` and ``inverse``;
    :class:`Sequential` hands each step the internal inputs it names (and only those), and rejects one that no step
    names.

Sampling options
    ``inverse`` also takes per-call keyword options (e.g. TarFlow's ``guidance``): :class:`Sequential` hands every
    option to every step, and a layer uses the ones it names in :attr:`Transform.inverse_options` and ignores the
    rest. :meth:`nfkit_core.NormalizingFlow.sample` rejects options that no layer of the flow names.

Shapes
    :class:`Sequential` checks the shape of every step's log-det (cheaply, always) and names the step that got it
    wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor, nn

from nfkit_core.validation import check_log_det

__all__ = ["Bijector", "Transform", "Sequential", "sum_except_batch"]


@runtime_checkable
class Bijector(Protocol):
    """The contract of every layer: a normalizing ``forward`` and a generative ``inverse``, each returning
    ``(output, log_det)`` with ``log_det`` of shape ``(batch,)`` in nats.

    ``is_bijective`` is ``False`` for stochastic layers (their forward log-det is a bound term, see the module
    docstring). ``inverse`` accepts per-call sampling options as keywords and ignores those it does not know.
    """

    is_bijective: bool
    """``False`` for stochastic layers, whose forward log-det is a term of a lower bound."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The normalizing direction, data -> latent.

        Args:
            x: a batch of inputs, batch first: ``(B, ...)``.
            context: the conditioning of each input (e.g. class labels of shape ``(B,)``), or ``None``.

        Returns:
            ``(z, log_det)``, the outputs (batch first) and ``log |det dz/dx|`` of each input, shape ``(B,)``, in
            nats (for a stochastic layer, its term of the lower bound).
        """
        ...

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        """The generative direction, latent -> data.

        Args:
            z: a batch of latents, batch first: ``(B, ...)``.
            context: the conditioning of each latent, or ``None``.
            options: per-call sampling options; a layer reads those it names in ``inverse_options`` and ignores
                the others.

        Returns:
            ``(x, log_det)``, the outputs and ``log |det dx/dz|`` of each latent, shape ``(B,)``, in nats.
        """
        ...


class Transform(nn.Module):
    """The base class of layers: a :class:`torch.nn.Module` that implements :class:`Bijector`.

    Subclasses implement :meth:`forward` and :meth:`inverse`. Set ``is_bijective = False`` for stochastic layers,
    list the sampling options that :meth:`inverse` reads in ``inverse_options``, and the internal inputs that both
    directions take as keywords in ``internal_inputs`` (see the module docstring).
    """

    is_bijective: bool = True
    """``False`` for stochastic layers."""
    inverse_options: ClassVar[tuple[str, ...]] = ()
    """The names of the sampling options that :meth:`inverse` reads."""
    internal_inputs: tuple[str, ...] = ()
    """The names of the internal inputs (e.g. a dequantizer's features) that :meth:`forward` and :meth:`inverse` take
    as keywords; a :class:`Sequential` hands each one only to the steps that name it."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map data towards the latent.

        Args:
            x: a batch of inputs, batch first: ``(B, ...)``.
            context: the conditioning of each input, or ``None``.

        Returns:
            ``(z, log_det)`` with ``log_det`` of shape ``(B,)`` in nats.
        """
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        """Map a latent towards data.

        Args:
            z: a batch of latents, batch first: ``(B, ...)``.
            context: the conditioning of each latent, or ``None``.
            options: per-call sampling options (those named in
                :attr:`~nfkit_core.transform.Transform.inverse_options` are read).

        Returns:
            ``(x, log_det)`` with ``log_det`` of shape ``(B,)`` in nats.
        """
        raise NotImplementedError


class Sequential(Transform):
    """Transforms applied one after another (``forward`` in order, ``inverse`` in reverse order).

    Give the transforms positionally (named ``"0"``, ``"1"``, ...) or as a mapping from name to transform; the names
    are how :meth:`nfkit_core.NormalizingFlow.intermediates` refers to the output of each step. Sampling options
    given to :meth:`inverse` reach every step; internal inputs given as keywords to :meth:`forward` or :meth:`inverse`
    reach the steps that name them in ``internal_inputs`` (the union of which is the sequence's own).

    Args:
        transforms: the steps in forward order, or one mapping from step name to step.

    Example:
        >>> import torch
        >>> from nfkit_core.layers import ActNorm, Reverse
        >>> steps = Sequential({"norm": ActNorm(2), "flip": Reverse()})
        >>> steps.names()
        ['norm', 'flip']
        >>> z, log_det = steps(torch.randn(4, 2))
        >>> x, inverse_log_det = steps.inverse(z)
        >>> torch.allclose(log_det, -inverse_log_det)
        True
    """

    def __init__(self, *transforms: Transform | Mapping[str, Transform]) -> None:
        super().__init__()
        if len(transforms) == 1 and isinstance(transforms[0], Mapping):
            named = dict(transforms[0])
        else:
            named = {str(i): t for i, t in enumerate(transforms)}
        self.transforms = nn.ModuleDict(named)
        self.is_bijective = all(getattr(t, "is_bijective", True) for t in named.values())
        self.internal_inputs = tuple(sorted({name for t in named.values()
                                             for name in getattr(t, "internal_inputs", ())}))

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

    def forward(self, x: Tensor, context: Tensor | None = None, **inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Apply the steps in order.

        Args:
            x: a batch of inputs, batch first.
            context: the conditioning, handed to every step, or ``None``.
            inputs: internal inputs, each handed only to the steps that name it in ``internal_inputs``.

        Returns:
            the last step's output and the sum of the steps' log-dets, shape ``(B,)``, in nats.

        Raises:
            TypeError: an internal input that no step takes.
            ValueError: a step returned a log-det of another shape (the message names the step).
        """
        unknown = sorted(set(inputs) - set(self.internal_inputs))
        if unknown:
            raise TypeError(f"no step of this Sequential takes the internal input(s) {unknown}; its steps take "
                            f"{list(self.internal_inputs)}")
        total = x.new_zeros(x.shape[0])
        for name, transform in self.transforms.items():
            x, log_det = transform(x, context, **_named_by(transform, inputs))
            check_log_det(_describe(name, transform), log_det, total.shape[0])
            total = total + log_det
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        """Invert the steps in reverse order.

        Args:
            z: a batch of latents, batch first.
            context: the conditioning, handed to every step, or ``None``.
            options: sampling options, handed to every step, and internal inputs, each handed only to the steps that
                name it in ``internal_inputs``.

        Returns:
            the first step's inverse output and the sum of the steps' inverse log-dets, shape ``(B,)``, in nats.

        Raises:
            ValueError: a step returned a log-det of another shape (the message names the step).
        """
        inputs = {name: options.pop(name) for name in self.internal_inputs if name in options}
        total = z.new_zeros(z.shape[0])
        for name, transform in reversed(self.transforms.items()):
            z, log_det = transform.inverse(z, context, **options, **_named_by(transform, inputs))
            check_log_det(f"{_describe(name, transform)} (inverse)", log_det, total.shape[0])
            total = total + log_det
        return z, total


def _named_by(transform: nn.Module, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The internal inputs among ``inputs`` that ``transform`` names in its ``internal_inputs``."""
    return {name: inputs[name] for name in getattr(transform, "internal_inputs", ()) if name in inputs}


def _describe(name: str, transform: nn.Module) -> str:
    return f"step {name!r} ({type(transform).__name__})"


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum a tensor over every dimension but the first (the usual reduction of element-wise log-dets).

    Args:
        x: a tensor of shape ``(B, ...)``.

    Returns:
        the per-sample sums, shape ``(B,)``.

    Example:
        >>> import torch
        >>> sum_except_batch(torch.ones(2, 3, 4))
        tensor([12., 12.])
    """
    return x.reshape(x.shape[0], -1).sum(dim=1)

