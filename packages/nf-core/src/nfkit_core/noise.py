"""Where stochastic layers get their randomness, so that a caller can seed it, record it or replay it.

Stochastic layers (splits sampling their dropped half, noise augmentation, dequantization) never call
``torch.randn`` themselves; they call :func:`randn` / :func:`rand` here, which draw from the *current noise source*.
By default that is PyTorch's global generator. A caller changes it for a block of code::

    with nfkit_core.noise.use(torch.Generator().manual_seed(0)):     # reproducible
        flow.log_prob(x)
    with nfkit_core.noise.use(nfkit_core.noise.Record()) as record:      # keep every draw
        flow.log_prob(x)
    with nfkit_core.noise.use(nfkit_core.noise.Replay(record.draws)):    # the very same draws again
        flow.log_prob(x)

Draws are unscaled standard-normal or uniform(0, 1) tensors; layers scale them. During sampling,
:func:`temperature` tells latent-sampling layers by how much to scale their standard-normal draws.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["NoiseSource", "GlobalRNG", "GeneratorNoise", "Record", "Replay", "use", "randn", "rand", "temperature"]


class NoiseSource:
    """Produces standard-normal and uniform draws of a requested shape."""

    def draw(self, kind: str, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        """Draw unscaled noise.

        Args:
            kind: ``"normal"`` (standard normal) or ``"uniform"`` (uniform on ``[0, 1)``).
            shape: the shape of the draw, batch first.
            device: where the draw is returned.
            dtype: the floating-point type of the draw.

        Returns:
            a tensor of ``shape``.
        """
        raise NotImplementedError


class GlobalRNG(NoiseSource):
    """PyTorch's global random number generator (the default source)."""

    def draw(self, kind: str, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        sampler = torch.randn if kind == "normal" else torch.rand
        return sampler(tuple(shape), device=device, dtype=dtype)


class GeneratorNoise(NoiseSource):
    """Draws from a given :class:`torch.Generator` (on the generator's device, then moved).

    Args:
        generator: the generator; seed it for reproducible draws.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def draw(self, kind: str, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        sampler = torch.randn if kind == "normal" else torch.rand
        sample = sampler(tuple(shape), generator=self.generator, device=self.generator.device, dtype=dtype)
        return sample.to(device)


class Record(NoiseSource):
    """Draws from ``source`` (the global RNG by default) and keeps every draw, in order, in its list ``draws``.

    Args:
        source: where the draws come from; the global RNG by default.
    """

    def __init__(self, source: NoiseSource | None = None) -> None:
        self.source = source if source is not None else GlobalRNG()
        self.draws: list[Tensor] = []

    def draw(self, kind: str, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        sample = self.source.draw(kind, shape, device, dtype)
        self.draws.append(sample.detach().clone())
        return sample


class Replay(NoiseSource):
    """Hands out given draws in order, checking each against the shape the layer asks for.

    Raises :class:`ValueError` naming the draw when a shape does not match, when the draws run out, and (through
    :meth:`check_exhausted`) when some were left over.

    Args:
        draws: the draws to hand out, in order (e.g. :class:`Record`'s ``draws``).
    """

    def __init__(self, draws: Sequence[Tensor]) -> None:
        self.draws = list(draws)
        self.position = 0

    def draw(self, kind: str, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        if self.position >= len(self.draws):
            raise ValueError(f"noise replay ran out: draw #{self.position} of shape {tuple(shape)} was requested "
                             f"but only {len(self.draws)} draws were given")
        sample = self.draws[self.position]
        if tuple(sample.shape) != tuple(shape):
            raise ValueError(f"noise replay draw #{self.position} has shape {tuple(sample.shape)}, "
                             f"but the layer asked for {tuple(shape)}")
        self.position += 1
        return sample.to(device=device, dtype=dtype)

    def check_exhausted(self) -> None:
        """Raise if some draws were never used (the model drew less noise than was recorded)."""
        if self.position != len(self.draws):
            raise ValueError(f"noise replay used {self.position} of {len(self.draws)} draws")


@dataclass(frozen=True)
class _State:
    source: NoiseSource
    temperature: float


_DEFAULT_STATE = _State(GlobalRNG(), 1.0)
_current = contextvars.ContextVar("nf_noise", default=_DEFAULT_STATE)  # noqa: B039 (immutable state)


def as_source(noise: NoiseSource | torch.Generator | None) -> NoiseSource:
    """Accept a :class:`NoiseSource`, a :class:`torch.Generator` or ``None`` (the current source).

    Args:
        noise: a source, a generator to draw from, or ``None`` for the current source.

    Returns:
        the noise source.

    Raises:
        TypeError: anything else.
    """
    if noise is None:
        return _current.get().source
    if isinstance(noise, torch.Generator):
        return GeneratorNoise(noise)
    if isinstance(noise, NoiseSource):
        return noise
    raise TypeError(f"expected a NoiseSource or torch.Generator, got {type(noise).__name__}")


@contextlib.contextmanager
def use(noise: NoiseSource | torch.Generator | None, temperature: float | None = None) -> Iterator[NoiseSource]:
    """Draw from ``noise`` (and sample latents at ``temperature``) inside the ``with`` block.

    Args:
        noise: the noise source (see :func:`as_source`); ``None`` keeps the current one.
        temperature: the sampling temperature inside the block; ``None`` keeps the current one.

    Returns:
        a context manager that yields the noise source.

    Example:
        >>> import torch
        >>> from nfkit_core import noise
        >>> with noise.use(noise.Record()) as record:
        ...     first = noise.randn((2, 3))
        >>> with noise.use(noise.Replay(record.draws)):
        ...     torch.equal(noise.randn((2, 3)), first)
        True
    """
    state = _current.get()
    source = as_source(noise)
    token = _current.set(_State(source, state.temperature if temperature is None else float(temperature)))
    try:
        yield source
    finally:
        _current.reset(token)


def randn(shape: Sequence[int], *, device: torch.device | str | None = None,
          dtype: torch.dtype | None = None) -> Tensor:
    """A standard-normal draw from the current noise source.

    Args:
        shape: the shape of the draw, batch first.
        device: where the draw is returned (the CPU by default).
        dtype: its floating-point type (PyTorch's default by default).

    Returns:
        a tensor of ``shape``.
    """
    return _current.get().source.draw("normal", shape, torch.device(device or "cpu"),
                                       dtype or torch.get_default_dtype())


def rand(shape: Sequence[int], *, device: torch.device | str | None = None,
         dtype: torch.dtype | None = None) -> Tensor:
    """A uniform(0, 1) draw from the current noise source.

    Args:
        shape: the shape of the draw, batch first.
        device: where the draw is returned (the CPU by default).
        dtype: its floating-point type (PyTorch's default by default).

    Returns:
        a tensor of ``shape``.
    """
    return _current.get().source.draw("uniform", shape, torch.device(device or "cpu"),
                                       dtype or torch.get_default_dtype())


def temperature() -> float:
    """The temperature at which latent-sampling layers scale their standard-normal draws (1 outside sampling)."""
    return _current.get().temperature
