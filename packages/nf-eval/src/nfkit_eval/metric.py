"""What a metric is, for nfkit-eval and for any plugin that adds one.

A plugin registers a :class:`Metric` under the ``metric`` kind of the nf registry::

    @hookimpl
    def nf_register_metrics(registry):
        registry.add("metric", "mine", Metric("mine", "what it measures", compute))

where ``compute(context: nfkit_eval.EvalContext) -> list[Measurement]``. It then appears in ``nf eval --help`` and
runs like a built-in one (``nf eval RUN --metrics bpd,mine``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nfkit_eval.context import EvalContext
from nfkit_eval.data import EvalData
from nfkit_eval.report import Measurement

__all__ = ["Metric", "IMAGES", "VECTORS", "ANY_DATA"]

IMAGES = "images"
VECTORS = "vectors"
ANY_DATA = "any"


@dataclass(frozen=True)
class Metric:
    """A named evaluation.

    Attributes:
        name: the name ``--metrics`` takes.
        help: one line for ``nf eval --help``.
        compute: ``compute(context) -> list[Measurement]``.
        data: the data it applies to: :data:`IMAGES`, :data:`VECTORS` or :data:`ANY_DATA`.
        default: part of the default set of metrics (for the data it applies to).
    """

    name: str
    help: str
    compute: Callable[[EvalContext], list[Measurement]]
    data: str = ANY_DATA
    default: bool = False

    def applies_to(self, data: EvalData) -> bool:
        return self.data == ANY_DATA or (self.data == IMAGES) == data.is_image
