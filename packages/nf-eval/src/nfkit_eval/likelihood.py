"""Bits per dimension on a held-out split: the single-sample bound with its standard error, and the
importance-weighted bound over ``K`` draws of all noise.

For each example ``x`` (dataset values, see :class:`nfkit_eval.data.DiscreteLikelihood`):

* single-sample: ``L_1(x) = log p(preprocess(x)) + D log Δ`` under one draw of every noise (dequantization, noise
  augmentation, the flow's own stochastic layers). Its mean over the split is reported with the standard error
  ``sd / sqrt(n)`` over examples;
* importance-weighted (Burda et al. 2016, eq. 8; DenseFlow's protocol): ``L_K(x) = logsumexp_k L^(k)(x) - log K``
  over ``K`` independent draws (:func:`nfkit_core.flow.importance_weighted_log_prob`), a lower bound of ``log P(x)``
  that tightens as ``K`` grows.

A flow whose likelihood draws no noise at all (continuous data and bijective layers only) is *deterministic*: both
numbers are the same exact log-likelihood, and the report says so instead of spending ``K`` passes on it.
Bits/dim are ``-L / (D ln 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from nfkit_core.flow import bits_per_dim, forward_draws_noise, importance_weighted_log_prob
from nfkit_eval.data import DiscreteLikelihood, EvalData, stack
from nfkit_eval.report import Measurement

__all__ = ["per_example_bits_per_dim", "likelihood_is_stochastic", "likelihood_measurements"]


def likelihood_is_stochastic(model: DiscreteLikelihood, x: Tensor, context: Tensor | None) -> bool:
    """Whether ``model.log_prob`` draws any noise on this batch (dequantization, augmentation, factor-out).

    Args:
        model: the flow's discrete likelihood.
        x: a batch of dataset values (two examples are scored).
        context: their conditioning, or ``None``.
    """
    return forward_draws_noise(model, x[:2], None if context is None else context[:2])


@torch.no_grad()
def per_example_bits_per_dim(model: DiscreteLikelihood, x: Tensor, context: Tensor | None, num_samples: int = 1,
                             sample_batch_size: int = 1, batch_size: int = 256, seed: int = 0,
                             progress: Callable[[int], None] | None = None) -> Tensor:
    """Bits/dim of every example of ``x`` under the ``num_samples``-draw importance-weighted bound (1: single-sample).

    Noise comes from one :class:`torch.Generator` seeded with ``seed``, batch after batch, so the result is
    reproducible. ``progress(n)`` is called after each batch of ``n`` examples.

    Args:
        model: the flow's discrete likelihood (preprocessing, flow, bin width).
        x: dataset values, ``(N, *shape)``.
        context: their conditioning (e.g. labels ``(N,)``), or ``None``.
        num_samples: ``K``, the number of noise draws per example.
        sample_batch_size: draws evaluated in one forward pass.
        batch_size: examples per forward pass.
        seed: seeds every noise draw.
        progress: called with the number of examples after each batch.

    Returns:
        the bits/dim of each example, shape ``(N,)``.
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    num_dims = math.prod(x.shape[1:])
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        cb = None if context is None else context[start:start + batch_size]
        log_prob = importance_weighted_log_prob(model, xb, cb, num_samples, sample_batch_size, noise=generator)
        out.append(bits_per_dim(log_prob.double(), num_dims))
        if progress is not None:
            progress(len(xb))
    return torch.cat(out)


def _mean_and_stderr(values: Tensor) -> tuple[float, float | None]:
    """Mean and standard error over examples; a non-finite example makes both non-finite (never silently dropped)."""
    n = len(values)
    return values.mean().item(), (values.std().item() / math.sqrt(n) if n > 1 else None)


def _non_finite(values: Tensor) -> dict[str, int]:
    count = int((~torch.isfinite(values)).sum())
    return {"non_finite_examples": count} if count else {}


def likelihood_measurements(flow: torch.nn.Module, data: EvalData, *, importance_samples: int = 0,
                            sample_batch_size: int = 8, max_examples: int | None = None, batch_size: int = 256,
                            seed: int = 0, device: torch.device | str = "cpu", single: bool = True,
                            progress: Callable[[int], None] | None = None) -> list[Measurement]:
    """The single-sample ``bpd`` (when ``single``) and, when ``importance_samples`` K > 0, the K-draw ``bpd_iw``.

    Args:
        flow: the flow, in eval mode.
        data: the evaluation data (held-out split, preprocessing).
        importance_samples: ``K`` of the importance-weighted bound (0: not measured).
        sample_batch_size: draws evaluated in one forward pass.
        max_examples: score at most this many held-out examples (all when ``None``).
        batch_size: examples per forward pass.
        seed: seeds every noise draw.
        device: where the flow runs.
        single: measure the single-sample bound.
        progress: called with the number of examples after each batch.

    Returns:
        the measurements in bits/dim, each with its standard error over examples.
    """
    model = DiscreteLikelihood(flow, data.preprocessing).eval()
    x, labels = stack(data.held_out, max_examples)
    x, labels = x.to(device), labels.to(device)
    context = data.context(labels)
    stochastic = likelihood_is_stochastic(model, x, context)
    base = {"split": data.split, "examples": len(x), "seed": seed, "preprocessing": data.preprocessing.mode,
            "log_bin_width": data.preprocessing.log_bin_width, "num_dims": data.num_dims, "dtype": "float32",
            "likelihood": "stochastic bound" if stochastic else "exact (deterministic flow)"}
    results = []
    single_bpd = None
    if single or not stochastic:
        single_bpd = per_example_bits_per_dim(model, x, context, 1, 1, batch_size, seed, progress)
    if single:
        mean, stderr = _mean_and_stderr(single_bpd)
        results.append(Measurement("bpd", mean, stderr, "bits/dim", {**base, "draws_per_example": 1,
                                   "stderr": "sd over examples / sqrt(n)", **_non_finite(single_bpd)}))
    if importance_samples > 0:
        protocol = {**base, "K": importance_samples, "estimator": "logsumexp_k L_k - log K",
                    "sample_batch_size": sample_batch_size, "stderr": "sd over examples / sqrt(n)"}
        if stochastic:
            values = per_example_bits_per_dim(model, x, context, importance_samples, sample_batch_size, batch_size,
                                              seed + 1, progress)
        else:
            values = single_bpd
            protocol.update(K=1, note="the likelihood draws no noise: the importance-weighted bound equals the exact "
                                      "single-sample log-likelihood")
        mean, stderr = _mean_and_stderr(values)
        results.append(Measurement("bpd_iw", mean, stderr, "bits/dim", {**protocol, **_non_finite(values)}))
    return results
