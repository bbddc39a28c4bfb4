"""How nfkit-eval runs a metric that any plugin registers.

A metric is a :class:`nfkit_core.plugins.MetricSpec` in the registry's ``metrics`` registrar::

    @hookimpl
    def nf_register_metrics(metrics):
        metrics.add(MetricSpec("mine", compute, "what it measures", data="images"))

nfkit-eval's calling convention: ``compute(context: nfkit_eval.EvalContext) -> list[nfkit_eval.Measurement]``.
``data`` says which data it applies to (:data:`IMAGES`, :data:`VECTORS` or :data:`ANY_DATA`), ``default`` whether
``nf eval`` runs it when no ``--metrics`` are named. It appears in ``nf eval --help`` and runs like a built-in one.
"""

from __future__ import annotations

from nfkit_core.plugins import MetricSpec
from nfkit_eval.data import EvalData

__all__ = ["IMAGES", "VECTORS", "ANY_DATA", "applies_to"]

IMAGES = "images"
"""``MetricSpec.data`` of a metric of images."""
VECTORS = "vectors"
"""``MetricSpec.data`` of a metric of vectors (tabular and 2-d data)."""
ANY_DATA = "any"
"""``MetricSpec.data`` of a metric of any data."""


def applies_to(metric: MetricSpec, data: EvalData) -> bool:
    """Whether ``metric`` can run on ``data``.

    Args:
        metric: the registered metric.
        data: the evaluation data.
    """
    return metric.data == ANY_DATA or (metric.data == IMAGES) == data.is_image
