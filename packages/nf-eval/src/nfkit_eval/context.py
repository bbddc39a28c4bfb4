"""What every metric of one evaluation shares: the flow, the data, the options, and the work metrics have in common
(the generated samples, the reference set, the feature extractor, features), each computed once on first use.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core.errors import ConfigError
from nfkit_eval.data import EvalData, stack, to_data_space
from nfkit_eval.features import FeatureExtractor

__all__ = ["EvalOptions", "EvalContext", "EXTRACTORS"]

EXTRACTORS = ("auto", "inception", "classifier")


@dataclass
class EvalOptions:
    """Options of an evaluation (``nf eval --help`` explains each one).

    Attributes:
        seed: seeds every draw: likelihood noise, samples, interpolation pairs, KID subsets, the classifier.
        max_examples: evaluate likelihoods on at most this many held-out examples (all when unset).
        importance_samples: ``K`` of the importance-weighted bound.
        sample_batch_size: noise draws evaluated in one forward pass for that bound.
        num_samples: generated samples for sample metrics (default: as many as the held-out split has).
        temperature: temperature of the generated samples.
        extractor: ``auto`` (Inception-v3 for images of at least 32x32 pixels when its weights are found, else the
            dataset classifier), ``inception`` or ``classifier``.
        inception_weights: the Inception-v3 weights file (see :func:`nfkit_eval.features.find_inception_weights`).
        kid_subsets: random subsets KID averages over.
        kid_subset_size: rows per KID subset (default: ``min(1000, n_generated, n_reference)``).
        prc_neighborhood: ``k`` of precision/recall.
        interp_pairs: held-out pairs interpolated for the interpolation FD (default: as many as ``num_samples``).
        interp_temperatures: temperatures the interpolants are decoded at.
        interp_grid: columns ``a = 0 .. 1`` of the interpolation picture.
        sweep_temperatures: temperatures of the temperature sweep.
        batch_size: examples per forward pass.
        speed_batch: batch of the latency measurement.
        speed_large_batch: batch of the throughput measurements.
        speed_repeats: timed batches (after one warm-up batch).
        device: where the flow runs.
        progress: show progress bars.
    """

    seed: int = 0
    max_examples: int | None = None
    importance_samples: int = 100
    sample_batch_size: int = 16
    num_samples: int | None = None
    temperature: float = 1.0
    extractor: str = "auto"
    inception_weights: str | None = None
    kid_subsets: int = 100
    kid_subset_size: int | None = None
    prc_neighborhood: int = 3
    interp_pairs: int | None = None
    interp_temperatures: tuple[float, ...] = (1.0, 0.7)
    interp_grid: int = 8
    sweep_temperatures: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    batch_size: int = 256
    speed_batch: int = 16
    speed_large_batch: int = 256
    speed_repeats: int = 10
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.extractor not in EXTRACTORS:
            raise ConfigError(f"unknown extractor {self.extractor!r}; choose one of {', '.join(EXTRACTORS)}")
        if self.importance_samples < 1 or self.sample_batch_size < 1:
            raise ConfigError("importance_samples and sample_batch_size must be at least 1")
        if self.num_samples is not None and self.num_samples < 2:
            raise ConfigError(f"num_samples must be at least 2, got {self.num_samples}")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (for the report's header)."""
        return asdict(self)


@dataclass
class EvalContext:
    """One evaluation in progress. Metrics read ``flow``, ``data`` and ``options``, and share the
    lazily computed :meth:`reference`, :meth:`samples`, :meth:`extractor` and :meth:`features`.

    Attributes:
        flow: the flow under evaluation (in eval mode, on ``options.device``).
        data: the evaluation data: its held-out split, preprocessing and discrete likelihood.
        options: the options of this evaluation.
        cache_dir: where trained feature classifiers are kept (the run folder's ``eval_cache``).
        out_dir: where figures go (``None``: no figures).
        figures: name -> path of the figures written so far.
        _cache: the values :meth:`once` computed, by key (internal: leave it out).
    """

    flow: nn.Module
    data: EvalData
    options: EvalOptions
    cache_dir: Path | None = None
    out_dir: Path | None = None
    figures: dict[str, str] = field(default_factory=dict)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        """The device the flow runs on (``options.device``)."""
        return torch.device(self.options.device)

    def once(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for, the remembered value afterwards.

        Args:
            key: names the value (any hashable).
            compute: makes it.
        """
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @contextmanager
    def progress(self, total: int, desc: str):
        """A progress bar on stderr (a silent one with ``progress=False``); yields its ``update(n)``.

        Args:
            total: the number of units of work.
            desc: the bar's label.
        """
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, disable=not self.options.progress, leave=False, file=sys.stderr,
                   dynamic_ncols=True)
        try:
            yield bar.update
        finally:
            bar.close()

    def reference(self) -> tuple[Tensor, Tensor]:
        """The held-out split's values and labels."""
        return self.once("reference", lambda: stack(self.data.held_out))

    def reference_batch(self, n: int) -> tuple[Tensor, Tensor | None]:
        """``n`` held-out examples on the device, the split repeated as often as needed, and the flow's context for
        them (their labels for a class-conditional flow, else ``None``).

        Args:
            n: the batch size.
        """
        values, labels = self.reference()
        repeat = math.ceil(n / len(values))
        x = values.repeat(repeat, *([1] * (values.dim() - 1)))[:n].to(self.device)
        return x, self.data.context(labels.repeat(repeat)[:n].to(self.device))

    def num_samples(self) -> int:
        """How many samples the sample metrics generate: ``options.num_samples``, else the held-out split's size."""
        return self.options.num_samples or len(self.reference()[0])

    def sample_context(self, n: int) -> Tensor | None:
        """Class labels cycling through the classes for a class-conditional flow, else ``None``.

        Args:
            n: the number of samples.
        """
        if self.data.info.num_classes == 0:
            return None
        return torch.arange(n, device=self.device) % self.data.info.num_classes

    @torch.no_grad()
    def samples(self, temperature: float | None = None) -> Tensor:
        """``num_samples`` generated samples at ``temperature`` (the option's by default), in data space
        (:func:`nfkit_eval.data.to_data_space`), drawn from the seed in batches.

        Args:
            temperature: the sampling temperature; the option's when ``None``.

        Returns:
            the samples, ``(num_samples, *shape)`` in the dataset's units (e.g. levels for images).
        """
        temperature = self.options.temperature if temperature is None else temperature

        def draw() -> Tensor:
            n = self.num_samples()
            generator = torch.Generator(device=self.device).manual_seed(self.options.seed + 7919)
            context = self.sample_context(n)
            batches = []
            with self.progress(n, f"sampling at T={temperature}") as update:
                for start in range(0, n, self.options.batch_size):
                    size = min(self.options.batch_size, n - start)
                    part = None if context is None else context[start:start + size]
                    drawn = self.flow.sample(size, part, temperature=temperature, generator=generator)
                    batches.append(to_data_space(drawn, self.data.preprocessing).cpu())
                    update(size)
            return torch.cat(batches)

        return self.once(("samples", temperature), draw)

    def extractor(self) -> FeatureExtractor:
        """The feature extractor the options name (built once)."""
        return self.once("extractor", self._build_extractor)

    def _build_extractor(self) -> FeatureExtractor:
        from nfkit_eval.classifier import EPOCHS, ClassifierExtractor
        from nfkit_eval.features import InceptionV3, InceptionWeightsMissing, find_inception_weights

        choice = self.options.extractor
        if choice == "auto":  # Inception-v3 for images of at least 32x32 pixels when its weights are here
            choice = "classifier"
            if self.data.is_image and min(self.data.info.shape[1:]) >= 32:
                try:
                    find_inception_weights(self.options.inception_weights)
                    choice = "inception"
                except InceptionWeightsMissing:
                    pass
        if choice == "inception":
            if not self.data.is_image:
                raise ConfigError(f"Inception-v3 features need images; dataset {self.data.name!r} has shape "
                                 f"{self.data.info.shape}: use --extractor classifier")
            return InceptionV3(self.options.inception_weights, self.data.preprocessing.num_bins,
                               device=self.device)
        with self.progress(EPOCHS, f"{self.data.name} classifier (once per run folder)") as update:
            return ClassifierExtractor.for_data(self.data, self.cache_dir, self.options.seed, update)

    def features(self, key: Any, values: Callable[[], Tensor]) -> Tensor:
        """The extractor's float64 features of ``values()``, remembered under ``key``.

        Args:
            key: names the features (e.g. ``("samples", temperature)``).
            values: makes the data to extract them from, ``(n, *shape)``.

        Returns:
            the features, ``(n, d)`` (float64).
        """
        return self.once(("features", key), lambda: self.extractor()(values()).double())

    def distance_name(self) -> str:
        """``FID`` for Inception-v3 features, ``FD-<extractor>`` for any other."""
        name = self.extractor().name
        return "FID" if name == "inception-v3" else f"FD-{name}"
