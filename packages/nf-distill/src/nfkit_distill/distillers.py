"""The distillers nfkit-distill registers: LKD, ILKD, SKD and ILKD+SKD, each a default of one config.

A distiller's ``build(config, teacher, student, x, context, num_dims, log_bin_width)`` returns the objective the
trainer calls (:class:`~nfkit_distill.objective.DistillationObjective`): it pairs the two flows' intermediates and
checks their shapes on the preprocessed batch ``x``. A third-party distiller registers a
:class:`~nfkit_core.specs.DistillerSpec` whose ``build`` has that signature.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from nfkit_core.specs import DistillerSpec
from nfkit_distill.alignment import Pairing
from nfkit_distill.objective import DistillationConfig, DistillationObjective, freeze

__all__ = ["LKDConfig", "ILKDConfig", "SKDConfig", "ILKDSKDConfig", "build_objective", "DISTILLERS"]


@dataclass
class LKDConfig(DistillationConfig):
    """LKD (eq. 12): the final latents only; the paper's ILKD weights (0.9, 0.1)."""

    matching: str = "final"


@dataclass
class ILKDConfig(DistillationConfig):
    """ILKD (eq. 13): every aligned pair; the paper's weights (0.9, 0.1)."""


@dataclass
class SKDConfig(DistillationConfig):
    """SKD (eq. 14) with the NLL only; start it from an ILKD student (the paper finds it unstable otherwise)."""

    nll_weight: float = 0.85
    latent_weight: float = 0.0
    sample_weight: float = 0.15


@dataclass
class ILKDSKDConfig(DistillationConfig):
    """ILKD and SKD together: the paper's weights (0.85, 0.075, 0.075)."""

    nll_weight: float = 0.85
    latent_weight: float = 0.075
    sample_weight: float = 0.075


def build_objective(config: DistillationConfig, teacher: nn.Module, student: nn.Module, x: Tensor,
                    context: Tensor | None = None, num_dims: int | None = None,
                    log_bin_width: float = 0.0) -> DistillationObjective:
    """Freeze the teacher, pair the intermediates on batch ``x`` (an error before training if they do not match)
    and return the objective.

    Args:
        config: the distiller's options.
        teacher: the teacher flow (frozen here).
        student: the student flow.
        x: a preprocessed batch, shape ``(B, *data_shape)``, to check the pairing on.
        context: the conditioning of each example, or ``None``.
        num_dims: ``D``, the data dimensions for bits/dim; ``None`` takes the size of one example of ``x``.
        log_bin_width: ``log`` of the dequantization bin width (see :func:`nfkit_core.flow.bits_per_dim`).

    Returns:
        the objective the trainer calls.

    Raises:
        DistillationMismatchError: the flows have different level counts or a pair of different shapes.
    """
    freeze(teacher)
    pairing = Pairing.check(teacher, student, x, context, final_only=config.matching == "final",
                            factored_out=config.factored_out)
    dims = num_dims if num_dims is not None else x[0].numel()
    return DistillationObjective(config, teacher, student, pairing, dims, log_bin_width)


DISTILLERS = [
    DistillerSpec("lkd", LKDConfig, build_objective, "latent knowledge distillation: final latents (Walton et al.)"),
    DistillerSpec("ilkd", ILKDConfig, build_objective, "intermediate latent distillation at every aligned boundary"),
    DistillerSpec("skd", SKDConfig, build_objective, "synthesized knowledge distillation: decode one z with both"),
    DistillerSpec("ilkd+skd", ILKDSKDConfig, build_objective, "ILKD and SKD together (the paper's weights)"),
]
