"""Masked Autoregressive Flow (Papamakarios, Pavlakou & Murray 2017).

A MAF layer is a Gaussian MADE used as a bijection: with ``(m, log_p) = MADE(x)`` (mean and log-precision of each
conditional, each depending only on the inputs before it)::

    u = (x - m) * exp(log_p / 2),        log |det du/dx| = sum(log_p) / 2        (MAF, eq. 4-5)

so the density of ``x`` is evaluated in one pass, while generating ``x`` from ``u`` takes ``D`` sequential passes.

The log-precision is bounded to ``[-LOG_PRECISION_BOUND, LOG_PRECISION_BOUND]`` (this implementation's choice,
not the paper's). The MADE's output grows linearly with its input, so without a bound a layer multiplies an outlier
by ``exp(c |x|)``, the next layer exponentiates that again, and a few layers on a finite input around 15 standard
deviations overflow float32 to ``inf``; ``inf`` times the zero weights of the next MADE's masks is NaN. Within the
bound the map is exactly the paper's; a trained MAF on standardised data stays well inside it, and the stack can still
scale by up to ``exp(K * bound / 2)`` over ``K`` layers.
Layers alternate the order of the inputs (each MADE uses the reverse of the previous order) and are followed by a
batch-norm bijector (MAF, section 3.4), as in gpapamak/maf ``ml/models/mafs.py``.

A conditional MAF feeds the context (class labels or a vector) into the first hidden layer of every MADE
(``ConditionalGaussianMade``). As there, the first variable of a MADE's order has no hidden unit below its degree, so
its Gaussian does not depend on the context within that MADE; the next MADE, with the reversed order, conditions it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nfkit_core import NormalizingFlow, Sequential, StandardNormal, Transform
from nfkit_core.layers import BatchNorm
from nfkit_core.specs import DataInfo
from nfkit_core.validation import check_event_shape
from nfkit_glow_maf.made import ACTIVATIONS, MADE, input_degrees

__all__ = ["Flatten", "MAFConfig", "MaskedAutoregressiveTransform", "build_maf", "PRESETS"]


LOG_PRECISION_BOUND = 10.0
"""Largest magnitude of a MAF layer's log-precision, so conditional standard deviations lie in ``[exp(-5), exp(5)]``."""

class Flatten(Transform):
    """``(batch, *shape) -> (batch, prod(shape))`` (row-major), so that a MAF can model images; log-det 0.

    Args:
        shape: the shape of one data point, e.g. ``(C, H, W)``.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_event_shape("Flatten", x, self.shape)
        return x.flatten(1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        check_event_shape("Flatten.inverse", z, (math.prod(self.shape),))
        return z.unflatten(1, self.shape), z.new_zeros(z.shape[0])


class MaskedAutoregressiveTransform(Transform):
    """One MAF layer: a Gaussian MADE as a bijection of ``(batch, D)`` vectors.

    Args:
        made: a :class:`~nfkit_glow_maf.made.MADE` with ``params_per_feature=2`` (mean, log-precision).
    """

    def __init__(self, made: MADE) -> None:
        super().__init__()
        if made.params_per_feature != 2:
            raise ValueError(f"a Gaussian MADE gives 2 parameters per feature, got {made.params_per_feature}")
        self.made = made

    def _check(self, x: Tensor) -> None:
        check_event_shape("MaskedAutoregressiveTransform", x, (self.made.features,))

    def _gaussians(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The mean and the bounded log-precision of every conditional."""
        mean, log_precision = self.made(x, context).unbind(1)
        return mean, log_precision.clamp(-LOG_PRECISION_BOUND, LOG_PRECISION_BOUND)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        mean, log_precision = self._gaussians(x, context)
        return (x - mean) * torch.exp(0.5 * log_precision), 0.5 * log_precision.sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        """Invert by ``D`` passes: after pass ``k`` every input of degree ``<= k`` is exact (MAF, section 3.1).

        Args:
            z: latents of shape ``(B, D)``.
            context: the MADE's conditioning, or ``None``.
            options: sampling options (none are used).

        Returns:
            ``(x, log_det)``, ``log_det`` of shape ``(B,)`` in nats.
        """
        self._check(z)
        x = torch.zeros_like(z)
        for _ in range(self.made.features):
            mean, log_precision = self._gaussians(x, context)
            x = mean + z * torch.exp(-0.5 * log_precision)
        return x, -0.5 * log_precision.sum(dim=1)


@dataclass
class MAFConfig:
    """Options of a MAF (defaults: MAF (5) on POWER in the paper).

    Attributes:
        num_layers: number of MADEs (the paper's MAF (5) and MAF (10)).
        hidden_features: width of each hidden layer of a MADE.
        hidden_layers: number of hidden layers of a MADE.
        activation: ``"relu"`` or ``"tanh"``.
        batch_norm: put a batch-norm bijector after every MADE.
        input_order: order of the first MADE's inputs, ``"sequential"`` or ``"random"``; with ``"sequential"`` each
            MADE reverses the previous order, with ``"random"`` each draws a new one.
        hidden_degrees: ``"sequential"`` or ``"random"`` degrees for the hidden units.
        context_features: size of a real-valued context vector every MADE is conditioned on (0: none). Class labels
            need no option: the flow conditions on them when ``data.num_classes > 0`` (``train.class_conditional``).
        batch_norm_momentum: momentum of the batch-norm running statistics used in evaluation mode.
        order_seed: seeds the random orders and degrees (the weights follow torch's global seed).
    """

    num_layers: int = 5
    hidden_features: int = 100
    hidden_layers: int = 2
    activation: str = "relu"
    batch_norm: bool = True
    input_order: str = "sequential"
    hidden_degrees: str = "sequential"
    context_features: int = 0
    batch_norm_momentum: float = 0.1
    order_seed: int = 0

    def __post_init__(self) -> None:
        if self.num_layers < 1 or self.hidden_features < 1 or self.hidden_layers < 1:
            raise ValueError(f"num_layers, hidden_features and hidden_layers must be positive, got {self.num_layers}, "
                             f"{self.hidden_features}, {self.hidden_layers}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        for name in ("input_order", "hidden_degrees"):
            if getattr(self, name) not in ("sequential", "random"):
                raise ValueError(f"{name} must be 'sequential' or 'random', got {getattr(self, name)!r}")


# MAF (5) with the MADE sizes and activations of gpapamak/maf run_experiments.py (for CIFAR-10 one point of its grid);
# "tabular-small" and "digits" are small settings for CPU runs.
PRESETS: dict[str, dict] = {
    "power": dict(hidden_features=100, activation="relu"),
    "gas": dict(hidden_features=100, activation="tanh"),
    "hepmass": dict(hidden_features=512, activation="relu"),
    "miniboone": dict(hidden_features=512, activation="relu"),
    "bsds300": dict(hidden_features=1024, activation="relu"),
    "mnist": dict(hidden_features=1024, activation="relu"),
    "cifar10": dict(hidden_features=2048, activation="relu", hidden_degrees="random"),
    "tabular-small": dict(num_layers=5, hidden_features=64, hidden_layers=2),
    "digits": dict(num_layers=5, hidden_features=256, hidden_layers=2),
}

#: Where each preset comes from (the API reference and the architectures guide list them).
PRESET_SOURCES: dict[str, str] = {
    **{name: f"Papamakarios et al. 2017, MAF (5) on {label}; MADE sizes and activation of gpapamak/maf "
             "run_experiments.py" for name, label in [("power", "POWER"), ("gas", "GAS"), ("hepmass", "HEPMASS"),
                                                     ("miniboone", "MINIBOONE"), ("bsds300", "BSDS300"),
                                                     ("mnist", "MNIST")]},
    "cifar10": "Papamakarios et al. 2017, MAF (5) on CIFAR-10: one point of gpapamak/maf run_experiments.py's grid",
    "tabular-small": "nf: a small model for CPU runs on tabular data",
    "digits": "nf: a CPU-sized model of the 8x8 digits",
}


def build_maf(config: MAFConfig, data: DataInfo) -> NormalizingFlow:
    """A MAF for data of shape ``data.shape`` (vectors, or images that are flattened first).

    With ``data.num_classes > 0`` every MADE is conditioned on the class label given as context. The transform is an
    :class:`nfkit_core.Sequential` of named steps ``"layer0"``, ``"layer1"``, ... (each a MADE followed by its batch
    norm), preceded by ``"flatten"`` for non-vector data.

    Args:
        config: the MAF options.
        data: what the flow models: its ``shape``, ``num_classes`` (0: unconditional).

    Returns:
        the flow, with a standard normal prior.

    Raises:
        ValueError: class labels together with a context vector (``context_features > 0``).
    """
    if data.num_classes and config.context_features:
        raise ValueError("a MAF conditions on class labels (data.num_classes > 0) or on a context vector "
                         "(context_features > 0), not both")
    features = math.prod(data.shape)
    generator = torch.Generator().manual_seed(config.order_seed)
    steps: dict[str, Transform] = {}
    if len(data.shape) != 1:
        steps["flatten"] = Flatten(data.shape)
    order = input_degrees(features, config.input_order, generator)
    for index in range(config.num_layers):
        made = MADE(features, [config.hidden_features] * config.hidden_layers, order=order,
                    hidden_mode=config.hidden_degrees, activation=config.activation,
                    context_features=config.context_features,
                    num_classes=data.num_classes, generator=generator)
        layer: dict[str, Transform] = {"made": MaskedAutoregressiveTransform(made)}
        if config.batch_norm:
            layer["batch_norm"] = BatchNorm(features, momentum=config.batch_norm_momentum)
        steps[f"layer{index}"] = Sequential(layer)
        order = input_degrees(features, "random", generator) if config.input_order == "random" else order.flip(0)
    flow = NormalizingFlow(Sequential(steps), StandardNormal((features,)), data_shape=data.shape)
    # Knowledge distillation matches the output of every MADE block (one level; nfkit-distill).
    flow.matchable_intermediates = [[f"layer{index}" for index in range(config.num_layers)]]
    return flow
