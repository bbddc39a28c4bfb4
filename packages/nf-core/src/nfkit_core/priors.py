"""Base distributions of flows: the density of the latent ``z``.

A prior has an ``event_shape``, scores latents with ``log_prob(z, context) -> (batch,)`` (summed over the event, in
nats) and draws them with ``sample(n, context)``. Sampling takes its standard-normal noise from :mod:`nfkit_core.noise`
and multiplies it by the current sampling temperature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from nfkit_core import noise
from nfkit_core.transform import sum_except_batch
from nfkit_core.validation import check_class_labels, check_event_shape

__all__ = ["Prior", "GaussianPrior", "StandardNormal", "DiagonalGaussian", "ClassConditionalGaussian",
           "normal_log_prob"]

LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(z: Tensor, mean: Tensor | float = 0.0, log_scale: Tensor | float = 0.0) -> Tensor:
    """Element-wise ``log N(z; mean, exp(log_scale)^2)`` (not summed).

    Args:
        z: values of any shape.
        mean: the mean, broadcast against ``z``.
        log_scale: the natural log of the standard deviation, broadcast against ``z``.

    Returns:
        the log-density of each element, in nats, of the broadcast shape.
    """
    log_scale = torch.as_tensor(log_scale, dtype=z.dtype, device=z.device)
    return -0.5 * (LOG_2PI + 2 * log_scale + ((z - mean) * torch.exp(-log_scale)) ** 2)


@runtime_checkable
class Prior(Protocol):
    """The latent distribution of a :class:`nfkit_core.Flow`."""

    event_shape: tuple[int, ...]
    """The shape of one latent."""

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(z | context)``.

        Args:
            z: latents of shape ``(B, *event_shape)``.
            context: the conditioning of each latent (e.g. class labels of shape ``(B,)``), or ``None``.

        Returns:
            the log-density summed over the event, shape ``(B,)``, in nats.
        """
        ...

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Draw ``n`` latents (standard-normal noise from :mod:`nfkit_core.noise`, scaled by its temperature).

        Args:
            n: the number of latents; equal to the batch of ``context`` when one is given.
            context: the conditioning of each latent, or ``None``.

        Returns:
            latents of shape ``(n, *event_shape)``.
        """
        ...


class GaussianPrior(nn.Module):
    """The base class of diagonal Gaussian priors: a subclass gives ``mean_and_log_scale(context, n)``, tensors that
    broadcast to ``(n, *event_shape)``; scoring and sampling (scaled by the sampling temperature) are shared.

    Args:
        event_shape: the shape of one latent, e.g. ``(C, H, W)``.
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = tuple(int(d) for d in event_shape)

    def mean_and_log_scale(self, context: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        """Mean and log-scale for ``n`` latents with conditioning ``context``.

        Args:
            context: the conditioning of the latents, or ``None``.
            n: the number of latents.

        Returns:
            ``(mean, log_scale)``, tensors that broadcast to ``(n, *event_shape)``.
        """
        raise NotImplementedError

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(z | context)``.

        Args:
            z: latents of shape ``(B, *event_shape)``.
            context: the conditioning of each latent, or ``None``.

        Returns:
            the log-density summed over the event, shape ``(B,)``, in nats.

        Raises:
            ValueError: ``z`` is not of shape ``(B, *event_shape)``.

        Example:
            >>> import torch
            >>> from nfkit_core import StandardNormal
            >>> StandardNormal((2,)).log_prob(torch.zeros(3, 2))  # -log(2 pi) per latent
            tensor([-1.8379, -1.8379, -1.8379])
        """
        check_event_shape(type(self).__name__, z, self.event_shape, "latents")
        mean, log_scale = self.mean_and_log_scale(context, z.shape[0])
        return sum_except_batch(normal_log_prob(z, mean, log_scale))

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Draw ``n`` latents, ``mean + exp(log_scale) * eps * temperature`` with ``eps`` from :mod:`nfkit_core.noise`.

        Args:
            n: the number of latents; equal to the batch of ``context`` when one is given.
            context: the conditioning of each latent, or ``None``.

        Returns:
            latents of shape ``(n, *event_shape)``.
        """
        mean, log_scale = self.mean_and_log_scale(context, n)
        device = mean.device if isinstance(mean, Tensor) else None
        eps = noise.randn((n, *self.event_shape), device=device)
        return mean + torch.exp(log_scale) * eps * noise.temperature()


class StandardNormal(GaussianPrior):
    """``N(0, I)`` over ``event_shape``; it scores and samples as :meth:`GaussianPrior.log_prob` and
    :meth:`GaussianPrior.sample`.

    Args:
        event_shape: the shape of one latent, e.g. ``(C, H, W)``.

    Example:
        >>> import torch
        >>> prior = StandardNormal((3,))
        >>> prior.sample(2).shape, prior.log_prob(torch.zeros(2, 3)).shape
        (torch.Size([2, 3]), torch.Size([2]))
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__(event_shape)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def mean_and_log_scale(self, context: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        return self._zero, self._zero


class DiagonalGaussian(GaussianPrior):
    """``N(mean, diag(exp(log_scale))^2)`` with learned ``mean`` and ``log_scale`` (initialised to N(0, I)).

    Args:
        event_shape: the shape of one latent; ``mean`` and ``log_scale`` have this shape.
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__(event_shape)
        self.mean = nn.Parameter(torch.zeros(self.event_shape))
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def mean_and_log_scale(self, context: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        return self.mean, self.log_scale


class ClassConditionalGaussian(GaussianPrior):
    """A diagonal Gaussian whose mean and log-scale are looked up from the class label in ``context``.

    ``context`` holds integer labels of shape ``(batch,)`` in ``[0, num_classes)``; the embeddings start at zero, so
    the untrained prior is ``N(0, I)`` for every class.

    Args:
        event_shape: the shape of one latent.
        num_classes: the number of classes.
    """

    def __init__(self, event_shape: Sequence[int], num_classes: int) -> None:
        super().__init__(event_shape)
        self.num_classes = int(num_classes)
        size = math.prod(self.event_shape)
        self.mean = nn.Embedding(self.num_classes, size)
        self.log_scale = nn.Embedding(self.num_classes, size)
        nn.init.zeros_(self.mean.weight)
        nn.init.zeros_(self.log_scale.weight)

    def mean_and_log_scale(self, context: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        labels = check_class_labels(type(self).__name__, context, self.num_classes, n)
        shape = (n, *self.event_shape)
        return self.mean(labels).reshape(shape), self.log_scale(labels).reshape(shape)
