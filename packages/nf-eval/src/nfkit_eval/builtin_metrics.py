"""nfkit-eval's metrics: likelihood bounds, sample metrics, latent interpolation, tabular tests, speed and size.

Each is a :class:`nfkit_core.plugins.MetricSpec` whose ``compute`` reads the shared
:class:`~nfkit_eval.EvalContext`; the protocol of every number is written into its :class:`~nfkit_eval.Measurement`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfkit_core import noise
from nfkit_core.plugins import MetricSpec
from nfkit_eval import figures
from nfkit_eval.context import EvalContext
from nfkit_eval.data import stack, to_data_space
from nfkit_eval.interpolation import interpolate_pairs
from nfkit_eval.likelihood import likelihood_measurements
from nfkit_eval.metric import ANY_DATA, IMAGES, VECTORS
from nfkit_eval.report import Measurement
from nfkit_eval.sample_metrics import (
    frechet_distance,
    kernel_distance,
    ks_statistics,
    precision_recall,
    real_vs_generated_auc,
)

__all__ = ["BUILTIN_METRICS"]

SAMPLE_MAPPING = "samples mapped onto the data's levels (nfkit_eval.data.to_data_space)"


def _likelihood(context: EvalContext, single: bool, k: int) -> list[Measurement]:
    o = context.options
    n = len(context.data.held_out) if o.max_examples is None else min(o.max_examples, len(context.data.held_out))
    draws = (1 if single else 0) + k
    with context.progress(n * draws, "likelihood" if k == 0 else f"importance-weighted bound (K={k})") as update:
        return likelihood_measurements(context.flow, context.data, importance_samples=k,
                                       sample_batch_size=o.sample_batch_size, max_examples=o.max_examples,
                                       batch_size=o.batch_size, seed=o.seed, device=context.device, single=single,
                                       progress=lambda size: update(size * (k or 1)))


def bpd(context: EvalContext) -> list[Measurement]:
    return _likelihood(context, True, 0)


def iwbo(context: EvalContext) -> list[Measurement]:
    return _likelihood(context, False, context.options.importance_samples)


def _sample_protocol(context: EvalContext, temperature: float) -> dict:
    generated = context.samples(temperature)
    return {"split": context.data.split, "generated": len(generated), "reference": len(context.reference()[0]),
            "temperature": temperature, "seed": context.options.seed, "samples": SAMPLE_MAPPING,
            **context.extractor().protocol()}


def _generated_features(context: EvalContext, temperature: float | None = None) -> Tensor:
    temperature = context.options.temperature if temperature is None else temperature
    return context.features(("samples", temperature), lambda: context.samples(temperature))


def _reference_features(context: EvalContext) -> Tensor:
    return context.features("reference", lambda: context.reference()[0])


def _write_sample_figures(context: EvalContext) -> None:
    if context.out_dir is None or "samples" in context.figures:
        return
    k = context.data.preprocessing.num_bins
    samples = context.samples()
    train = context.once("train values", lambda: stack(context.data.train)[0])
    context.figures["samples"] = str(figures.save_levels(samples[:64], k, context.out_dir / "samples.png"))
    context.figures["nearest_neighbours"] = str(figures.save_nearest_neighbours(
        samples, train, k, context.out_dir / "nearest_neighbours.png"))


def fid(context: EvalContext) -> list[Measurement]:
    t = context.options.temperature
    value = frechet_distance(_generated_features(context), _reference_features(context))
    _write_sample_figures(context)
    return [Measurement(context.distance_name(), value, None, "", {**_sample_protocol(context, t),
                        "library": "torch_fidelity.metric_fid"})]


def kid(context: EvalContext) -> list[Measurement]:
    o = context.options
    generated, reference = _generated_features(context), _reference_features(context)
    size = o.kid_subset_size or min(1000, len(generated), len(reference))
    # Subsets as large as both sets are the whole sets, every time: one subset says all, and it has no spread.
    whole = size == len(generated) == len(reference)
    subsets = 1 if whole else o.kid_subsets
    mean, sd = kernel_distance(generated, reference, subsets, size, o.seed)
    prefix = "KID" if context.distance_name() == "FID" else f"KD-{context.extractor().name}"
    _write_sample_figures(context)
    spread = {"subsets": "1: the whole sets", "stderr": "none"} if whole else {"subsets": subsets,
                                                                                "stderr": "sd over subsets"}
    return [Measurement(prefix, mean, None if whole else sd, "", {
        **_sample_protocol(context, o.temperature), **spread, "subset_size": size, "kernel": "(x.y / d + 1)^3",
        "estimator": "unbiased MMD^2", "library": "torch_fidelity.metric_kid"})]


def prc(context: EvalContext) -> list[Measurement]:
    o = context.options
    precision, recall = precision_recall(_generated_features(context), _reference_features(context),
                                         o.prc_neighborhood)
    protocol = {**_sample_protocol(context, o.temperature), "k": o.prc_neighborhood,
                "library": "torch_fidelity.metric_prc"}
    _write_sample_figures(context)
    return [Measurement("precision", precision, None, "", protocol, lower_is_better=False),
            Measurement("recall", recall, None, "", protocol, lower_is_better=False)]


def _pairs(context: EvalContext, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` pairs of distinct held-out indices (of the same class for a class-conditional flow)."""
    _, labels = context.reference()
    count = len(labels)
    u = torch.randint(count, (n,), generator=generator)
    if context.data.info.num_classes > 0:
        v = torch.stack([_same_class(labels, int(i), generator) for i in u])
    else:
        v = (u + torch.randint(1, count, (n,), generator=generator)) % count
    return u, v


def _same_class(labels: Tensor, index: int, generator: torch.Generator) -> Tensor:
    candidates = torch.nonzero((labels == labels[index]) & (torch.arange(len(labels)) != index)).flatten()
    if len(candidates) == 0:
        return torch.tensor(index)
    return candidates[torch.randint(len(candidates), (1,), generator=generator)][0]


@torch.no_grad()
def _interpolants(context: EvalContext, u: Tensor, v: Tensor, a: Tensor, temperature: float,
                  generator: torch.Generator) -> Tensor:
    values, labels = context.reference()
    data, device = context.data, context.device
    out = []
    for start in range(0, len(u), context.options.batch_size):
        iu, iv = u[start:start + context.options.batch_size], v[start:start + context.options.batch_size]
        labels_u = labels[iu].to(device)
        cond = data.context(labels_u)
        with_noise = torch.Generator(device=device).manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
        with noise.use(with_noise):
            x_u, _ = data.preprocessing(values[iu].to(device), labels_u, train=False)
            x_v, _ = data.preprocessing(values[iv].to(device), labels_u, train=False)
        decoded = interpolate_pairs(context.flow, x_u, x_v, a[start:start + len(iu)].to(device), cond, temperature,
                                    with_noise)
        out.append(decoded.cpu())
    return to_data_space(torch.cat(out), data.preprocessing)


def interp(context: EvalContext) -> list[Measurement]:
    o = context.options
    n = o.interp_pairs or context.num_samples()
    reference = _reference_features(context)
    name = context.distance_name()
    results = []
    for temperature in o.interp_temperatures:
        generator = torch.Generator().manual_seed(o.seed + 104729)
        u, v = _pairs(context, n, generator)
        a = torch.rand(n, generator=generator)
        interpolants = _interpolants(context, u, v, a, temperature, generator)
        value = frechet_distance(context.extractor()(interpolants).double(), reference)
        protocol = {"split": context.data.split, "pairs": n, "alpha": "one a ~ U(0,1) per pair",
                    "pairs_from": "held-out split" + (", same class" if context.data.info.num_classes else ""),
                    "temperature": temperature, "seed": o.seed, "interpolation": "norm-preserving, eq. 16 of "
                    "'Distilling Normalizing Flows', in the prior's standardized coordinates, times T",
                    "factored_out_latents": "resampled at temperature T (multi-scale flows)",
                    "reference": len(reference), "library": "torch_fidelity.metric_fid",
                    **context.extractor().protocol()}
        results.append(Measurement(f"{name} interpolation T={temperature:g}", value, None, "", protocol))
        if context.out_dir is not None and context.data.is_image:
            rows, columns = 8, o.interp_grid
            grid_u, grid_v = u[:rows].repeat_interleave(columns), v[:rows].repeat_interleave(columns)
            grid_a = torch.linspace(0, 1, columns).repeat(rows)
            grid = _interpolants(context, grid_u, grid_v, grid_a, temperature, torch.Generator().manual_seed(o.seed))
            path = context.out_dir / f"interpolation_T{temperature:g}.png"
            context.figures[f"interpolation T={temperature:g}"] = str(
                figures.save_levels(grid, context.data.preprocessing.num_bins, path, nrow=columns))
    return results


def sweep(context: EvalContext) -> list[Measurement]:
    o = context.options
    reference = _reference_features(context)
    name = context.distance_name()
    values = [frechet_distance(_generated_features(context, t), reference) for t in o.sweep_temperatures]
    results = [Measurement(f"{name} T={t:g}", value, None, "", _sample_protocol(context, t))
               for t, value in zip(o.sweep_temperatures, values, strict=True)]
    if context.out_dir is not None:
        path = context.out_dir / "temperature_sweep.png"
        context.figures["temperature sweep"] = str(figures.plot_temperature_sweep(o.sweep_temperatures, values,
                                                                                   name, path))
    return results


def tabular(context: EvalContext) -> list[Measurement]:
    o = context.options
    generated, (reference, _) = context.samples(), context.reference()
    statistics = ks_statistics(generated, reference)
    auc = real_vs_generated_auc(generated, reference, o.seed)
    protocol = {"split": context.data.split, "generated": len(generated), "reference": len(reference),
                "temperature": o.temperature, "seed": o.seed, "test": "scipy.stats.ks_2samp per feature"}
    return [Measurement("KS mean", float(statistics.mean()), None, "", {**protocol, "features": len(statistics)}),
            Measurement("KS max", float(statistics.max()), None, "", {**protocol, "features": len(statistics)}),
            Measurement("real-vs-generated AUC", auc["auc"], None, "", {**protocol, **auc["protocol"],
                        "ideal": 0.5})]


def speed(context: EvalContext) -> list[Measurement]:
    from nfkit_eval.speed import measure_speed

    return measure_speed(context)


BUILTIN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("bpd", bpd, "bits/dim of the single-sample bound on the held-out split, with its standard error",
               ANY_DATA, default=True),
    MetricSpec("iwbo", iwbo, "bits/dim of the importance-weighted bound over K draws of all noise (= bpd for "
               "deterministic flows)", ANY_DATA, default=True),
    MetricSpec("fid", fid, "Fréchet distance of samples to the held-out split in Inception-v3 (FID) or "
               "dataset-classifier (FD-<dataset>) features", IMAGES, default=True),
    MetricSpec("kid", kid, "kernel distance (KID) in the same features, mean ± sd over subsets", IMAGES,
               default=True),
    MetricSpec("prc", prc, "precision and recall (Kynkäänniemi et al., k=3) in the same features", IMAGES,
               default=True),
    MetricSpec("interp", interp, "Fréchet distance of norm-preserving latent interpolants (eq. 16 of 'Distilling "
               "Normalizing Flows') at each temperature, and interpolation grids", IMAGES, default=True),
    MetricSpec("sweep", sweep, "Fréchet distance of samples at several temperatures, and its plot", IMAGES),
    MetricSpec("tabular", tabular, "per-feature Kolmogorov-Smirnov statistics and a real-vs-generated classifier's "
               "ROC-AUC", VECTORS, default=True),
    MetricSpec("speed", speed, "parameters, sampling latency, samples/s, likelihood throughput, peak memory",
               ANY_DATA),
)
