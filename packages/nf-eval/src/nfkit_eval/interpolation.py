"""Norm-preserving latent interpolation ("Distilling Normalizing Flows", eq. 16).

For the latents ``z_u, z_v`` of two held-out images and ``a`` in ``[0, 1]``::

    f(u, v, a) = ((1 - a) z_u + a z_v) * ((1 - a)|z_u| + a|z_v|) / |(1 - a) z_u + a z_v|

the straight line between the latents, rescaled to the linearly interpolated norm, so interpolants keep the norm of
typical latents instead of shrinking towards the mode as the straight line does (for independent Gaussian latents
``|(z_u + z_v) / 2|`` is about ``|z| / sqrt(2)``).

The latents are taken in the prior's standardized coordinates ``eps = (z - mean) / scale`` (the identity for a
standard normal prior), interpolated, multiplied by the temperature ``T``, and mapped back to
``z = mean + scale * eps``.
For a multi-scale flow, :meth:`nfkit_core.Flow.transform_to_latent` returns the top latent only: that one is
interpolated, and the factored-out latents are *resampled* from their conditional priors at temperature ``T`` while
decoding (likewise any noise-augmentation channels are dropped by the generative direction). A single-scale flow
(TarFlow, MAF) has only the one latent, so the interpolant is decoded deterministically.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfkit_core import noise

__all__ = ["norm_preserving_interpolation", "prior_standardize", "interpolate_pairs"]


def norm_preserving_interpolation(z_u: Tensor, z_v: Tensor, a: Tensor | float) -> Tensor:
    """Eq. 16 for batches of latents ``(n, ...)`` and one ``a`` per pair (shape ``(n,)``) or a scalar.

    The result's norm (over all non-batch dimensions) is exactly ``(1 - a)|z_u| + a|z_v|``.

    Args:
        z_u: the first latents, ``(n, ...)``.
        z_v: the second latents, the shape of ``z_u``.
        a: the interpolation weight of ``z_v``, in ``[0, 1]``: one per pair ``(n,)`` or a scalar.

    Returns:
        the interpolants, the shape of ``z_u``.
    """
    a = torch.as_tensor(a, dtype=z_u.dtype, device=z_u.device)
    a = a.reshape(-1, *([1] * (z_u.dim() - 1))) if a.dim() else a
    line = (1 - a) * z_u + a * z_v
    dims = tuple(range(1, z_u.dim()))
    def norm(z: Tensor) -> Tensor:
        return torch.linalg.vector_norm(z, dim=dims, keepdim=True)

    target = (1 - a) * norm(z_u) + a * norm(z_v)
    return line * target / norm(line).clamp_min(torch.finfo(z_u.dtype).tiny)


class _Constant(noise.NoiseSource):
    """Every draw is ``value``: probes how a prior turns its standard-normal draws into latents."""

    def __init__(self, value: float) -> None:
        self.value = value

    def draw(self, kind, shape, device, dtype) -> Tensor:
        return torch.full(tuple(shape), self.value, device=device, dtype=dtype)


@torch.no_grad()
def prior_standardize(prior: nn.Module, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(eps, mean, scale)`` with ``z = mean + scale * eps`` for the prior's latent distribution.

    nf's priors are diagonal Gaussians that sample ``mean + scale * eps`` from :func:`nfkit_core.noise.randn`; their
    mean and scale are read off by sampling with every draw set to 0, 1 and 2 (whatever the prior's own
    parametrisation, learned or class-conditional). A prior that does not sample that way is left as it is:
    ``(z, 0, 1)``.

    Args:
        prior: the flow's prior.
        z: latents of shape ``(n, *event_shape)``.
        context: their conditioning, or ``None``.
    """
    def draw(value: float) -> Tensor:
        with noise.use(_Constant(value), temperature=1.0):
            return prior.sample(z.shape[0], context).to(z)

    mean, one, two = draw(0.0), draw(1.0), draw(2.0)
    scale = one - mean
    affine = (scale > 0).all() and torch.allclose(two - mean, 2 * scale, rtol=1e-4, atol=1e-5)
    if not affine or mean.shape != z.shape:
        return z, torch.zeros_like(z), torch.ones_like(z)
    return (z - mean) / scale, mean, scale


@torch.no_grad()
def interpolate_pairs(flow: nn.Module, x_u: Tensor, x_v: Tensor, a: Tensor, context: Tensor | None = None,
                      temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Decode eq. 16's interpolants between the (preprocessed) inputs ``x_u`` and ``x_v``, one ``a`` per pair.

    ``generator`` seeds every noise draw (the encoders' and the resampled factored-out latents).

    Args:
        flow: the flow, in eval mode.
        x_u: the first inputs, preprocessed as the flow takes them, ``(n, *data_shape)``.
        x_v: the second inputs, the shape of ``x_u``.
        a: the interpolation weight of ``x_v`` of each pair, ``(n,)``.
        context: the conditioning of the pairs, or ``None``.
        temperature: scales the latents and the resampled factored-out latents.
        generator: seeds every noise draw.

    Returns:
        the decoded interpolants, ``(n, *data_shape)``.
    """
    with noise.use(generator):
        z_u = flow.transform_to_latent(x_u, context)
        z_v = flow.transform_to_latent(x_v, context)
        eps_u, mean, scale = prior_standardize(flow.prior, z_u, context)
        eps_v, _, _ = prior_standardize(flow.prior, z_v, context)
        eps = norm_preserving_interpolation(eps_u, eps_v, a) * temperature
        return flow.latent_to_data(mean + scale * eps, context, temperature=temperature)
