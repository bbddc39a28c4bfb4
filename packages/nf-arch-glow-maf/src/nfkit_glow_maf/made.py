"""MADE: the masked autoencoder that conditions each output on the inputs before it (Germain et al. 2015).

Every input ``d`` gets a *degree* ``m(d)`` in ``1..D`` (its position in the autoregressive order) and every hidden
unit a degree in ``1..D-1``. A weight from a unit of degree ``a`` to a hidden unit of degree ``b`` exists only if
``a <= b``, and from a hidden unit of degree ``a`` to an output of degree ``b`` only if ``a < b`` (MADE, eq. 12-13).
Output ``d`` therefore depends only on the inputs of smaller degree. Degrees, masks and initialisation follow
gpapamak/maf (``ml/models/mades.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit_core.validation import check_class_labels, check_event_shape

__all__ = ["MADE", "MaskedLinear", "input_degrees", "hidden_degrees"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def input_degrees(features: int, order: str | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """The degrees ``1..D`` of the inputs.

    Args:
        features: ``D``.
        order: ``"sequential"`` (``1, 2, ..., D``), ``"random"`` (a random permutation drawn from ``generator``), or
            an explicit permutation of ``1..D``.
        generator: source of the random order.
    """
    if isinstance(order, str):
        if order == "sequential":
            return torch.arange(1, features + 1)
        if order == "random":
            return torch.randperm(features, generator=generator) + 1
        raise ValueError(f"input order must be 'sequential', 'random' or a permutation of 1..D, got {order!r}")
    degrees = torch.as_tensor(list(order), dtype=torch.long)
    if degrees.shape != (features,) or not torch.equal(degrees.sort().values, torch.arange(1, features + 1)):
        raise ValueError(f"an explicit input order must be a permutation of 1..{features}, got {degrees.tolist()}")
    return degrees


def hidden_degrees(features: int, units: int, previous: Tensor, mode: str,
                   generator: torch.Generator | None = None) -> Tensor:
    """The degrees of a hidden layer of ``units`` units following a layer of degrees ``previous``.

    ``"sequential"`` cycles through ``1..D-1``; ``"random"`` draws uniformly from ``[min(previous), D-1]`` (as
    gpapamak/maf; with ``D = 1`` every hidden degree is 0 and the outputs depend on no input).

    Args:
        features: ``D``, the number of inputs of the MADE.
        units: the number of hidden units of the layer.
        previous: the degrees of the layer before, shape ``(units_before,)``.
        mode: ``"sequential"`` or ``"random"``.
        generator: the random generator of ``"random"``.

    Returns:
        the degrees, shape ``(units,)`` (``long``).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode == "sequential":
        return torch.arange(units) % max(1, features - 1) + min(1, features - 1)
    if mode == "random":
        low = min(int(previous.min()), features - 1)
        return torch.randint(low, features, (units,), generator=generator)
    raise ValueError(f"hidden degree mode must be 'sequential' or 'random', got {mode!r}")


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed binary ``mask`` of shape ``(out, in)``.

    Weights are drawn from ``N(0, 1 / (in + 1))`` and biases start at zero, as in gpapamak/maf.

    Args:
        mask: the connectivity, ``(out_features, in_features)``, 1 where a connection is allowed.
    """

    def __init__(self, mask: Tensor) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / math.sqrt(in_features + 1))
            self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """``x (weight * mask)^T + bias``.

        Args:
            x: the input, ``(B, in_features)``.
        """
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """A masked MLP mapping ``x`` of shape ``(batch, D)`` to ``params_per_feature`` autoregressive parameters per input.

    Output ``[:, p, d]`` depends only on the inputs whose degree is smaller than ``degrees[d]`` (and on the context).

    Args:
        features: ``D``, the number of inputs.
        hidden_features: widths of the hidden layers.
        params_per_feature: number of outputs per input (2 for a Gaussian MADE: mean and log-precision).
        order: the input order (see :func:`input_degrees`).
        hidden_mode: how hidden units get degrees, ``"sequential"`` or ``"random"`` (see :func:`hidden_degrees`).
        activation: ``"relu"`` or ``"tanh"``.
        context_features: size of a real-valued context vector that feeds the first hidden layer unmasked (the
            conditional MADE of gpapamak/maf); 0 for none.
        num_classes: number of class labels that feed the first hidden layer, given as integer context (equivalent to
            a one-hot vector times a weight matrix); 0 for none.
        generator: source of random orders and degrees.
    """

    def __init__(self, features: int, hidden_features: Sequence[int], params_per_feature: int = 2,
                 order: str | Sequence[int] = "sequential", hidden_mode: str = "sequential",
                 activation: str = "relu", context_features: int = 0, num_classes: int = 0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"MADE needs at least one input feature, got {features}")
        if not hidden_features:
            raise ValueError("MADE needs at least one hidden layer")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if context_features and num_classes:
            raise ValueError("give either context_features (real-valued context) or num_classes (labels), not both")
        self.features = features
        self.params_per_feature = params_per_feature
        self.num_classes = num_classes
        self.context_features = context_features

        degrees = [input_degrees(features, order, generator)]
        for units in hidden_features:
            degrees.append(hidden_degrees(features, units, degrees[-1], hidden_mode, generator))
        self.register_buffer("degrees", degrees[0])

        self.hidden = nn.ModuleList(MaskedLinear(previous[None, :] <= current[:, None])
                                    for previous, current in zip(degrees[:-1], degrees[1:]))
        self.activation = ACTIVATIONS[activation]()
        output_mask = degrees[-1][None, :] < degrees[0][:, None]
        self.output = MaskedLinear(output_mask.repeat(params_per_feature, 1))

        first = hidden_features[0]
        if context_features:
            self.context_net: nn.Module | None = nn.Linear(context_features, first, bias=False)
            nn.init.normal_(self.context_net.weight, 0.0, 1.0 / math.sqrt(context_features + 1))
        elif num_classes:
            self.context_net = nn.Embedding(num_classes, first)
            nn.init.normal_(self.context_net.weight, 0.0, 1.0 / math.sqrt(num_classes + 1))
        else:
            self.context_net = None

    def _context_term(self, context: Tensor | None, batch: int) -> Tensor | None:
        if self.context_net is None:
            return None
        if context is None:
            raise ValueError("this MADE is conditional: pass a context (class labels or a context vector)")
        if self.num_classes:
            return self.context_net(check_class_labels("MADE", context, self.num_classes, batch))
        check_event_shape("MADE", context, (self.context_features,), "a context")
        return self.context_net(context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Autoregressive parameters of shape ``(batch, params_per_feature, D)``.

        Args:
            x: inputs of shape ``(batch, D)``.
            context: class labels ``(batch,)`` or a context vector ``(batch, context_features)``, or ``None``.
        """
        h = self.hidden[0](x)
        context_term = self._context_term(context, x.shape[0])
        if context_term is not None:
            h = h + context_term
        h = self.activation(h)
        for layer in self.hidden[1:]:
            h = self.activation(layer(h))
        return self.output(h).unflatten(1, (self.params_per_feature, self.features))
