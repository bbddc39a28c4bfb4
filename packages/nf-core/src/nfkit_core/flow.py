"""The :class:`Flow` contract and :class:`NormalizingFlow`, the flow every architecture is built as.

A normalizing flow is a prior, a stack of transforms, and optionally a dequantizer in front of them. With
``y = dequantize(x)`` (identity without a dequantizer) and ``z, log_det = transform(y)``::

    log p(x) >= log p_prior(z) + log_det + dequantization

where ``dequantization`` is the forward log-det of the dequantizer: the change of units from integer bins to
continuous values minus ``log q(u | x)`` of the dequantization noise. For a flow made only of bijections and no
dequantizer the bound is an equality. :class:`LogLikelihood` keeps the three terms apart so that reports can write
each one out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from nfkit_core import noise as noise_lib
from nfkit_core.priors import Prior
from nfkit_core.transform import Sequential, Transform
from nfkit_core.validation import check_event_shape, check_log_det, validating

__all__ = ["Flow", "NormalizingFlow", "LogLikelihood", "bits_per_dim", "forward_draws_noise",
           "importance_weighted_log_prob", "log_prob_draws"]

Noise = noise_lib.NoiseSource | torch.Generator | None


def bits_per_dim(log_prob: Tensor, num_dims: int, log_bin_width: float = 0.0) -> Tensor:
    """Convert a log-density in nats to bits per dimension, ``-(log_prob + D log Δ) / (D ln 2)``.

    Args:
        log_prob: log-densities in nats, any shape (usually ``(B,)``).
        num_dims: the number of data dimensions ``D`` (e.g. ``C * H * W``).
        log_bin_width: ``log(Δ)`` for data that was uniformly dequantized outside the model into bins of width
            ``Δ`` (e.g. ``log(2/256)`` for 8-bit images scaled to [-1, 1]): the discrete log-likelihood is then
            ``log p(y) + D log Δ``. Leave it at 0 when ``log_prob`` already is a discrete log-likelihood (a flow
            with its own dequantizer) or for continuous data.

    Returns:
        bits per dimension, the shape of ``log_prob``.

    Example:
        >>> import math, torch
        >>> bits_per_dim(torch.tensor([-64 * math.log(2)]), num_dims=64)  # 1 bit per dimension
        tensor([1.])
    """
    return -(log_prob + num_dims * log_bin_width) / (num_dims * math.log(2.0))


@dataclass
class LogLikelihood:
    """The terms of ``log p(x)`` for ``num_dims`` data dimensions.

    Args:
        prior: ``log p_prior(z)``, shape ``(B,)``, in nats.
        log_det: the transform's ``log |det dz/dy|``, shape ``(B,)``, in nats.
        dequantization: the dequantizer's term (0 without one), shape ``(B,)``, in nats.
        num_dims: the number of data dimensions ``D``.
    """

    prior: Tensor
    log_det: Tensor
    dequantization: Tensor
    num_dims: int

    @property
    def total(self) -> Tensor:
        """``prior + log_det + dequantization``: the log-likelihood (a lower bound for stochastic flows)."""
        return self.prior + self.log_det + self.dequantization

    @property
    def bits_per_dim(self) -> Tensor:
        """``-total / (num_dims * ln 2)``."""
        return bits_per_dim(self.total, self.num_dims)


@runtime_checkable
class Flow(Protocol):
    """The contract of a flow: what trainers, evaluators, samplers and distillers rely on.

    A flow is also a :class:`torch.nn.Module` (parameters, ``state_dict``, ``train()``/``eval()``, ``.to()``).
    Besides the methods below it declares what it needs from the training pipeline:

    * ``dequantizes``: it takes integer levels and dequantizes them itself (else the pipeline feeds continuous data,
      dequantized uniformly outside the model);
    * ``noise_std``: the standard deviation of the Gaussian noise the pipeline adds to the training data (0: none;
      TarFlow's noise augmentation).
    """

    data_shape: tuple[int, ...]
    """The shape of one data point, e.g. ``(C, H, W)`` for images or ``(D,)`` for vectors."""
    num_dims: int
    """The number of data dimensions ``D = prod(data_shape)``, the denominator of bits/dim."""
    dequantizes: bool
    """Whether the flow takes integer levels and dequantizes them itself."""
    noise_std: float
    """The standard deviation of the training noise augmentation, in data units (0 for none)."""

    def log_prob_terms(self, x: Tensor, context: Tensor | None = None, *, noise: Noise = None
                       ) -> LogLikelihood:
        """The terms of ``log p(x | context)``, kept apart so that reports can write each one out.

        Args:
            x: a batch of data of shape ``(B, *data_shape)``: integer levels in ``[0, num_bins)`` for a flow that
                :attr:`dequantizes`, else continuous values.
            context: the conditioning of each data point (e.g. class labels of shape ``(B,)``), or ``None``.
            noise: a :class:`nfkit_core.noise.NoiseSource` or :class:`torch.Generator` that seeds or replays the
                draws of the stochastic layers (global RNG when ``None``).

        Returns:
            the prior, log-det and dequantization terms, each of shape ``(B,)`` in nats.
        """
        ...

    def log_prob(self, x: Tensor, context: Tensor | None = None, *, noise: Noise = None) -> Tensor:
        """``log p(x | context)``: exact for bijective flows, a one-sample lower bound for stochastic ones.

        Args:
            x: a batch of data of shape ``(B, *data_shape)`` (as for :meth:`log_prob_terms`).
            context: the conditioning of each data point, or ``None``.
            noise: seeds or replays the stochastic layers' draws.

        Returns:
            the log-likelihood of each data point, shape ``(B,)``, in nats (for bits/dim see
            :func:`nfkit_core.bits_per_dim`).
        """
        ...

    def transform_to_latent(self, x: Tensor, context: Tensor | None = None, *, noise: Noise = None) -> Tensor:
        """The normalizing direction: the latent ``z`` that the prior scores for data ``x``.

        Args:
            x: a batch of data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.
            noise: seeds or replays the stochastic layers' draws.

        Returns:
            the latents, shape ``(B, *prior.event_shape)`` (for multi-scale flows the top latent only).
        """
        ...

    def latent_to_data(self, z: Tensor, context: Tensor | None = None, *, noise: Noise = None,
                       temperature: float = 1.0, **options: Any) -> Tensor:
        """The generative direction from given latents ``z``.

        Args:
            z: latents of shape ``(B, *prior.event_shape)``.
            context: the conditioning of each sample, or ``None``.
            noise: seeds or replays the draws of the stochastic layers (e.g. factored-out latents).
            temperature: scales the layers' own latent draws.
            options: sampling options of the flow's layers (:meth:`sampling_options`).

        Returns:
            data of shape ``(B, *data_shape)`` (integer levels for a flow that :attr:`dequantizes`).
        """
        ...

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """Draw ``n`` samples.

        Args:
            n: the number of samples.
            context: the conditioning of each sample (e.g. class labels of shape ``(n,)``), or ``None``.
            temperature: multiplies the standard deviation of every latent draw (1: the model's distribution).
            generator: makes the draws reproducible.
            options: sampling options of the flow's layers (:meth:`sampling_options`).

        Returns:
            samples of shape ``(n, *data_shape)``.

        Raises:
            ValueError: an option that no layer of the flow takes, ``n < 0`` or a negative temperature.
        """
        ...

    def sampling_options(self) -> set[str]:
        """The names of the keyword options that :meth:`sample` and :meth:`latent_to_data` take."""
        ...

    def intermediates(self, x: Tensor, context: Tensor | None = None, names: Iterable[str] | None = None, *,
                      noise: Noise = None) -> dict[str, Tensor]:
        """The outputs of named sub-transforms during the normalizing pass, for knowledge distillation.

        Args:
            x: a batch of data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.
            names: the sub-transforms to report (module paths relative to the transform); all steps by default.
            noise: seeds or replays the stochastic layers' draws.

        Returns:
            each name's output tensor (batch first), in the order of ``names``; gradients flow through them.
        """
        ...


class NormalizingFlow(nn.Module):
    """A normalizing flow ``prior <- transform <- dequantizer <- data``: the implementation of :class:`Flow` that
    every architecture is built as.

    An architecture composes layers into the ``transform`` and chooses the ``prior``; what is particular to it lives
    in its layers (e.g. TarFlow's guidance is a sampling option of its blocks, see :meth:`sample`). A subclass may
    assemble the parts in its constructor and add methods, but does not override the ones of :class:`Flow`.

    Args:
        transform: the normalizing transform, data -> latent (usually a :class:`nfkit_core.Sequential` whose step names
            are the names of :meth:`intermediates`).
        prior: the latent distribution.
        dequantizer: optional layer that maps integer data ``x`` in ``[0, num_bins)`` to continuous values and returns
            its dequantization term as log-det. With one, :meth:`log_prob` takes integer data and :meth:`sample`
            returns integer data.
        data_shape: the shape of one data point; inferred from the prior when the transform keeps shapes.
        noise_std: standard deviation of the Gaussian noise the training pipeline adds to the data (0: none); the
            noise level that :meth:`denoise` removes.

    Raises:
        ValueError: a negative ``noise_std``, or noise augmentation together with a dequantizer.

    Example:
        A flow of 2-d vectors: ActNorm, then two affine couplings whose conditioners see one coordinate each.

        >>> import torch
        >>> from torch import nn
        >>> from nfkit_core import NormalizingFlow, Sequential, StandardNormal
        >>> from nfkit_core.layers import ActNorm, AffineCoupling, Reverse
        >>> _ = torch.manual_seed(0)
        >>> transform = Sequential({"actnorm": ActNorm(2), "coupling0": AffineCoupling(nn.Linear(1, 2)),
        ...                         "reverse": Reverse(), "coupling1": AffineCoupling(nn.Linear(1, 2))})
        >>> flow = NormalizingFlow(transform, StandardNormal((2,)))
        >>> x = torch.randn(5, 2)
        >>> flow.log_prob(x).shape  # nats, one per data point
        torch.Size([5])
        >>> terms = flow.log_prob_terms(x)
        >>> torch.allclose(terms.total, terms.prior + terms.log_det)
        True
        >>> flow.sample(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
        >>> list(flow.intermediates(x))  # the step names of the Sequential
        ['actnorm', 'coupling0', 'reverse', 'coupling1']
    """

    def __init__(self, transform: Transform, prior: Prior, dequantizer: Transform | None = None,
                 data_shape: tuple[int, ...] | None = None, noise_std: float = 0.0) -> None:
        super().__init__()
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if dequantizer is not None and noise_std > 0:
            raise ValueError("a flow with its own dequantizer takes integer levels; noise augmentation "
                             "(noise_std > 0) applies only to flows of continuous data")
        self.transform = transform
        self.prior = prior
        self.dequantizer = dequantizer
        self.data_shape = tuple(data_shape) if data_shape is not None else tuple(prior.event_shape)
        self.noise_std = float(noise_std)

    @property
    def num_dims(self) -> int:
        """Number of data dimensions ``D`` (used for bits/dim)."""
        return math.prod(self.data_shape)

    @property
    def dequantizes(self) -> bool:
        """Whether the flow takes integer levels and dequantizes them itself."""
        return self.dequantizer is not None

    def sampling_options(self) -> set[str]:
        """The keyword options :meth:`sample` takes: ``denoise`` and those the layers name in ``inverse_options``."""
        return {"denoise"} | {option for module in self.modules() for option in getattr(module, "inverse_options", ())}

    def _check_input(self, x: Tensor) -> None:
        check_event_shape(type(self).__name__, x, self.data_shape, "data")
        if validating() and x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError(f"{type(self).__name__}: the data contains NaN or infinite values")

    def log_prob_terms(self, x: Tensor, context: Tensor | None = None, *, noise: Noise = None) -> LogLikelihood:
        """The terms of ``log p(x | context)``, kept apart.

        Args:
            x: a batch of data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.
            noise: seeds or replays the stochastic layers' draws.

        Returns:
            the prior, log-det and dequantization terms, each of shape ``(B,)`` in nats.

        Raises:
            ValueError: ``x`` is not of shape ``(B, *data_shape)``, or a part returns a log-det of the wrong shape.
        """
        self._check_input(x)
        with noise_lib.use(noise):
            if self.dequantizer is not None:
                y, dequantization = self.dequantizer(x, context)
                check_log_det(f"the dequantizer ({type(self.dequantizer).__name__})", dequantization, x.shape[0])
            else:
                y, dequantization = x, x.new_zeros(x.shape[0], dtype=torch.get_default_dtype())
            z, log_det = self.transform(y, context)
            check_log_det(f"the transform ({type(self.transform).__name__})", log_det, x.shape[0])
            prior = self.prior.log_prob(z, context)
            check_log_det(f"the prior ({type(self.prior).__name__}) log_prob", prior, x.shape[0])
        return LogLikelihood(prior=prior, log_det=log_det, dequantization=dequantization, num_dims=self.num_dims)

    def log_prob(self, x: Tensor, context: Tensor | None = None, *, noise: Noise = None) -> Tensor:
        """``log p(x | context)`` (a one-sample lower bound for stochastic flows).

        Args:
            x: a batch of data of shape ``(B, *data_shape)``: integer levels for a flow with a dequantizer, else
                continuous values.
            context: the conditioning of each data point (e.g. class labels of shape ``(B,)``), or ``None``.
            noise: a :class:`nfkit_core.noise.NoiseSource` or :class:`torch.Generator` that seeds or replays the
                stochastic layers' draws (the global RNG when ``None``).

        Returns:
            the log-likelihood of each data point, shape ``(B,)``, in nats.

        Raises:
            ValueError: ``x`` is not of shape ``(B, *data_shape)``, or (with validation on) holds NaN or infinity.
        """
        return self.log_prob_terms(x, context, noise=noise).total

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Same as :meth:`log_prob` (so that wrappers such as DistributedDataParallel see the training objective).

        Args:
            x: a batch of data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.
        """
        return self.log_prob(x, context)

    def bits_per_dim(self, x: Tensor, context: Tensor | None = None, *, noise: Noise = None) -> Tensor:
        """``-log p(x | context) / (D ln 2)``.

        Args:
            x: a batch of data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.
            noise: seeds or replays the stochastic layers' draws.

        Returns:
            bits per dimension of each data point, shape ``(B,)``.
        """
        return self.log_prob_terms(x, context, noise=noise).bits_per_dim

    def transform_to_latent(self, x: Tensor, context: Tensor | None = None, *, noise: Noise = None) -> Tensor:
        """The latent ``z`` that the prior scores for data ``x``.

        Args:
            x: a batch of data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.
            noise: seeds or replays the stochastic layers' draws.

        Returns:
            the latents, shape ``(B, *prior.event_shape)``.
        """
        with noise_lib.use(noise):
            y = self.dequantizer(x, context)[0] if self.dequantizer is not None else x
            return self.transform(y, context)[0]

    def latent_to_data(self, z: Tensor, context: Tensor | None = None, *, noise: Noise = None,
                       temperature: float = 1.0, **options: Any) -> Tensor:
        """Run the generative direction from given latents ``z``.

        Args:
            z: latents of shape ``(B, *prior.event_shape)``.
            context: the conditioning of each sample, or ``None``.
            noise: seeds or replays the draws of the stochastic layers (e.g. factored-out latents).
            temperature: scales the stochastic layers' own latent draws.
            options: sampling options; they reach every layer's ``inverse``.

        Returns:
            data of shape ``(B, *data_shape)`` (integer levels for a flow with a dequantizer).
        """
        with noise_lib.use(noise, temperature=temperature):
            y = self.transform.inverse(z, context, **options)[0]
            return self.dequantizer.inverse(y, context, **options)[0] if self.dequantizer is not None else y

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, *, denoise: bool = False, **options: Any) -> Tensor:
        """Draw ``n`` samples.

        Args:
            n: number of samples.
            context: conditioning of each sample (e.g. class labels of shape ``(n,)``).
            temperature: scales every latent draw.
            generator: makes the draws reproducible.
            denoise: finish with one score-based denoising step (:meth:`denoise`; flows trained with noise
                augmentation only).
            options: sampling options of the flow's layers (:meth:`sampling_options`), e.g. TarFlow's
                ``guidance=2.0``; they reach every layer through :meth:`nfkit_core.Sequential.inverse`.

        Returns:
            samples of shape ``(n, *data_shape)``, integer levels for a flow with a dequantizer, else continuous
            values in the units the flow was trained on.

        Raises:
            ValueError: an option no layer takes, ``n < 0``, or a temperature that is negative or not finite.
        """
        unknown = sorted(set(options) - self.sampling_options()) if options else []
        if unknown:
            raise ValueError(f"{type(self).__name__}.sample() takes no option(s) {unknown}; its options: "
                             f"{', '.join(sorted(self.sampling_options()))}")
        if n < 0:
            raise ValueError(f"the number of samples must be >= 0, got {n}")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        if n == 0:  # an empty batch, without running layers that index their first row
            like = next(self.parameters(), torch.empty(0))
            return torch.empty((0, *self.data_shape), device=like.device, dtype=like.dtype)
        with noise_lib.use(generator, temperature=temperature):
            z = self.prior.sample(n, context)
            x = self.latent_to_data(z, context, temperature=temperature, **options)
        return self.denoise(x, context) if denoise else x

    def score(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``grad_x log p(x | context)`` by autograd through the flow, in fp32 (for continuous data).

        Args:
            x: a batch of continuous data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.

        Returns:
            the score, the shape of ``x``, in nats per data unit.
        """
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            x = x.detach().requires_grad_(True)
            log_prob = self.log_prob(x, context)
            return torch.autograd.grad(log_prob.sum(), x)[0]

    def denoise(self, x: Tensor, context: Tensor | None = None, noise_std: float | None = None) -> Tensor:
        """One step of score-based denoising: ``x + sigma^2 grad_x log p(x)`` (Tweedie's formula).

        A model of ``y = x + sigma eps`` gives ``E[x | y] = y + sigma^2 grad_y log p(y)`` (Tweedie; Efron 2011), so a
        flow trained on noise-augmented data (Zhai et al. 2025) removes the noise from its samples this way.

        Args:
            x: noisy data (e.g. fresh samples).
            context: their conditioning.
            noise_std: ``sigma``; by default the training noise ``self.noise_std``.

        Returns:
            the denoised data, the shape of ``x``.

        Raises:
            ValueError: no noise level (a flow trained without noise augmentation and no ``noise_std``).
        """
        sigma = self.noise_std if noise_std is None else float(noise_std)
        if sigma <= 0:
            raise ValueError("denoising needs a noise level: this flow was not trained with noise augmentation "
                             "(noise_std = 0); pass noise_std=...")
        return (x + sigma**2 * self.score(x, context)).detach()

    def intermediates(self, x: Tensor, context: Tensor | None = None, names: Iterable[str] | None = None, *,
                      noise: Noise = None) -> dict[str, Tensor]:
        """The outputs of named sub-transforms during a forward pass, for knowledge distillation.

        ``names`` are module paths relative to ``self.transform`` (e.g. ``"level0"`` or ``"level0.split"``); by default
        every step of a :class:`nfkit_core.Sequential` transform. Gradients flow through the returned tensors.

        Args:
            x: a batch of data of shape ``(B, *data_shape)``.
            context: the conditioning of each data point, or ``None``.
            names: the sub-transforms to report; by default every step of the transform.
            noise: seeds or replays the stochastic layers' draws.

        Returns:
            each name's output (batch first), in the order of ``names``.

        Raises:
            KeyError: a name that is not a sub-transform.
            ValueError: no ``names`` for a transform that is not a :class:`nfkit_core.Sequential`.
        """
        if names is None:
            if not isinstance(self.transform, Sequential):
                raise ValueError("this flow's transform has no named steps; pass names=... explicitly")
            names = self.transform.names()
        names = list(names)
        modules = dict(_step_paths(self.transform))
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise KeyError(f"unknown intermediate names {unknown}; known: {sorted(k for k in modules if k)}")
        outputs: dict[str, Tensor] = {}

        def keep(name: str):
            def hook(module: nn.Module, args: tuple, output: tuple[Tensor, Tensor]) -> None:
                outputs[name] = output[0]
            return hook

        handles = [modules[name].register_forward_hook(keep(name)) for name in names]
        try:
            self.transform_to_latent(x, context, noise=noise)
        finally:
            for handle in handles:
                handle.remove()
        return {name: outputs[name] for name in names if name in outputs}


def _step_paths(module: nn.Module, prefix: str = "") -> Iterable[tuple[str, nn.Module]]:
    """``(path, sub-module)`` pairs where the steps of a :class:`Sequential` are addressed by their step names."""
    children = module.transforms.items() if isinstance(module, Sequential) else module.named_children()
    for name, child in children:
        path = f"{prefix}.{name}" if prefix else name
        yield path, child
        yield from _step_paths(child, path)


@torch.no_grad()
def log_prob_draws(flow: Flow, x: Tensor, context: Tensor | None = None, num_samples: int = 32,
                   sample_batch_size: int = 1, *, noise: Noise = None) -> Tensor:
    """``K = num_samples`` one-sample bounds of :meth:`NormalizingFlow.log_prob` under independent noise.

    ``sample_batch_size`` draws share one forward pass (the batch is repeated that many times): faster, at the cost
    of memory. Call it in eval mode, where layers with batch statistics use their running averages.

    Args:
        flow: the flow.
        x: a batch of data of shape ``(B, *data_shape)``.
        context: the conditioning of each data point, or ``None``.
        num_samples: the number of draws ``K``.
        sample_batch_size: draws evaluated in one forward pass.
        noise: seeds or replays the draws.

    Returns:
        the one-sample bounds in nats, shape ``(K, B)``.

    Raises:
        ValueError: ``num_samples`` or ``sample_batch_size`` below 1.
    """
    if num_samples < 1 or sample_batch_size < 1:
        raise ValueError(f"num_samples and sample_batch_size must be at least 1, got {num_samples} and "
                         f"{sample_batch_size}")
    bounds = []
    with noise_lib.use(noise):
        for start in range(0, num_samples, sample_batch_size):
            copies = min(sample_batch_size, num_samples - start)
            repeated = x.repeat(copies, *([1] * (x.dim() - 1)))
            repeated_context = None if context is None else context.repeat(copies, *([1] * (context.dim() - 1)))
            bounds.append(flow.log_prob(repeated, repeated_context).view(copies, x.shape[0]))
    return torch.cat(bounds)


@torch.no_grad()
def importance_weighted_log_prob(flow: Flow, x: Tensor, context: Tensor | None = None, num_samples: int = 32,
                                 sample_batch_size: int = 1, *, noise: Noise = None) -> Tensor:
    """The importance-weighted estimate ``log (1/K) sum_k exp(L_k)`` over ``K`` independent draws of all noise.

    ``L_k`` are one-sample bounds of :meth:`NormalizingFlow.log_prob` (see :func:`log_prob_draws`). The estimate is a
    tighter lower bound of ``log p(x)`` than their mean (Burda et al. 2016, eq. 8) and equals it for flows whose
    forward pass draws no noise.

    Args:
        flow: the flow.
        x: a batch of data of shape ``(B, *data_shape)``.
        context: the conditioning of each data point, or ``None``.
        num_samples: the number of draws ``K``.
        sample_batch_size: draws evaluated in one forward pass (faster, more memory).
        noise: seeds or replays the draws.

    Returns:
        the estimate of each data point, shape ``(B,)``, in nats.
    """
    bounds = log_prob_draws(flow, x, context, num_samples, sample_batch_size, noise=noise)
    return torch.logsumexp(bounds, dim=0) - math.log(num_samples)


@torch.no_grad()
def forward_draws_noise(flow: Flow, x: Tensor, context: Tensor | None = None) -> bool:
    """Whether ``flow.log_prob(x)`` draws any noise (dequantizers, augmentation): only then can the
    importance-weighted estimate differ from the one-sample bound.

    Args:
        flow: the flow.
        x: a batch of data of shape ``(B, *data_shape)``.
        context: the conditioning of each data point, or ``None``.
    """
    with noise_lib.use(noise_lib.Record()) as record:
        flow.log_prob(x, context)
    return bool(record.draws)
