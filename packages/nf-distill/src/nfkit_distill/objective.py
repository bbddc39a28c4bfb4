"""The distillation objective (Walton et al., eq. 15): ``lambda0 * NLL + lambda1 * L_ILKD + lambda2 * L_SKD``.

A :class:`DistillationObjective` holds a frozen teacher and the pairing of its intermediates with a student's, and
turns one preprocessed batch into the loss the student minimises. Teacher and student see the same batch: the
trainer dequantizes (or noises) it once, and the teacher only reads it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core import noise
from nfkit_core.flow import bits_per_dim
from nfkit_distill.alignment import Pairing, capture
from nfkit_distill.losses import DISTANCES, ilkd_loss, skd_loss

__all__ = ["NLL_UNITS", "MATCHINGS", "DistillationConfig", "DistillationObjective", "freeze"]

NLL_UNITS = ("bpd", "nats")
MATCHINGS = ("final", "levels")


@dataclass
class DistillationConfig:
    """Options of a distillation (``--set distill.KEY=VALUE``); defaults: the paper's ILKD on images.

    Attributes:
        nll_weight: ``lambda0``, the weight of the student's negative log-likelihood.
        latent_weight: ``lambda1``, the weight of the latent term (LKD or ILKD, by ``matching``).
        sample_weight: ``lambda2``, the weight of SKD (0: no sample term, no decoding cost).
        nll_unit: the unit of the NLL term, which sets its balance with the others: ``"bpd"`` (bits per dimension,
            the authors' images) or ``"nats"`` (nats summed over the dimensions of an example, their tabular data).
        matching: ``"final"`` (LKD, eq. 12: the final latents only) or ``"levels"`` (ILKD, eq. 13: every pair of
            the alignment rule, see :mod:`nfkit_distill.alignment`).
        latent_distance: ``"mse"`` (the authors' code) or ``"l1"`` (the paper) for LKD/ILKD.
        sample_distance: ``"l1"`` (paper and code) or ``"mse"`` for SKD.
        sample_temperature: temperature of the factored-out latents drawn while decoding for SKD (code: 0.7).
        shared_split_noise: draw the factored-out latents once and decode them in both models (the code draws them
            independently in each).
        factored_out: also match the halves that splits factor out (the code matches the kept halves only).
    """

    nll_weight: float = 0.9
    latent_weight: float = 0.1
    sample_weight: float = 0.0
    nll_unit: str = "bpd"
    matching: str = "levels"
    latent_distance: str = "mse"
    sample_distance: str = "l1"
    sample_temperature: float = 0.7
    shared_split_noise: bool = False
    factored_out: bool = False

    def __post_init__(self) -> None:
        for name, value, choices in (("nll_unit", self.nll_unit, NLL_UNITS), ("matching", self.matching, MATCHINGS),
                                     ("latent_distance", self.latent_distance, DISTANCES),
                                     ("sample_distance", self.sample_distance, DISTANCES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        weights = (self.nll_weight, self.latent_weight, self.sample_weight)
        if min(weights) < 0 or not any(weights):
            raise ValueError(f"the weights (nll_weight, latent_weight, sample_weight) must be >= 0 and not all 0, "
                             f"got {weights}")
        if self.sample_temperature < 0:
            raise ValueError(f"sample_temperature must be >= 0, got {self.sample_temperature}")


def freeze(teacher: nn.Module) -> nn.Module:
    """Put the teacher in eval mode (batch norm uses its running statistics) with no parameter needing a gradient.

    Args:
        teacher: the teacher flow, changed in place.

    Returns:
        ``teacher`` itself.
    """
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


class DistillationObjective:
    """The loss of eq. 15 for one student and its frozen teacher.

    Args:
        config: the weights, unit and distances.
        teacher: the teacher flow (frozen here: eval mode, no gradients; it is no parameter of the student).
        student: the student flow (the module the optimizer trains).
        pairing: the matched intermediates (:meth:`Pairing.check`).
        num_dims: ``D``, the data dimensions (for bits/dim).
        log_bin_width: ``log`` of the dequantization bin width (see :func:`nfkit_core.flow.bits_per_dim`).
    """

    def __init__(self, config: DistillationConfig, teacher: nn.Module, student: nn.Module, pairing: Pairing,
                 num_dims: int, log_bin_width: float = 0.0) -> None:
        self.config = config
        self.teacher = freeze(teacher)
        self.student = student
        self.pairing = pairing
        self.num_dims = int(num_dims)
        self.log_bin_width = float(log_bin_width)
        self.latent_shape = pairing.shapes[-1]

    def nll(self, log_prob: Tensor) -> Tensor:
        """The NLL term in the configured unit.

        Args:
            log_prob: the student's ``log p(x)`` in nats, shape ``(B,)``.

        Returns:
            the batch mean of ``-log p(x)`` in nats per example (``nll_unit="nats"``) or in bits/dim, with the
            dequantization term (``"bpd"``); a scalar.
        """
        if self.config.nll_unit == "nats":
            return -log_prob.mean()
        return bits_per_dim(log_prob, self.num_dims, self.log_bin_width).mean()

    def __call__(self, model: nn.Module, x: Tensor, context: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The loss on a preprocessed batch ``x``, the student's ``log p(x)`` (nats, per example) and the terms.

        ``model`` is the student as the trainer calls it (possibly wrapped by DistributedDataParallel); its forward
        is ``log_prob``. The student runs first, so that its noise draws are those of likelihood-only training.
        """
        c = self.config
        pairs = self.pairing.pairs
        with _capture_if(c.latent_weight > 0, self.student, [p.student for p in pairs], c.factored_out) as student:
            log_prob = model(x, context).float()
        terms = {"nll": self.nll(log_prob)}
        loss = c.nll_weight * terms["nll"]
        if c.latent_weight > 0:
            with torch.no_grad(), capture(self.teacher, [p.teacher for p in pairs], c.factored_out) as teacher:
                self.teacher.transform_to_latent(x, context)
            terms["latent"] = ilkd_loss([teacher[p.teacher] for p in pairs], [student[p.student] for p in pairs],
                                        c.latent_distance)
            loss = loss + c.latent_weight * terms["latent"]
        if c.sample_weight > 0:
            terms["sample"] = self.sample_loss(x.shape[0], context, x.device)
            loss = loss + c.sample_weight * terms["sample"]
        return loss, log_prob, terms

    def sample_loss(self, n: int, context: Tensor | None, device: torch.device) -> Tensor:
        """SKD: decode the same ``z ~ N(0, I)`` with both models (before any dequantizer) and compare.

        A sample that either model decodes to a non-finite value contributes 0 (:func:`skd_loss`). Dropping its term
        is not enough to keep it out of the gradient (the backward of an overflowed decoding multiplies 0 by
        infinity), so the student then decodes the finite rows again, with the same split noise, and only those
        carry a gradient.

        Args:
            n: the number of latents to decode (the batch size).
            context: the conditioning of each latent, shape ``(n,)`` for class labels, or ``None``.
            device: where to draw and decode.

        Returns:
            the SKD loss, a scalar, the mean per-sample distance of the two decodings with a non-finite sample counting
            as 0; 0 when no sample is finite.
        """
        c = self.config
        z = noise.randn((n, *self.latent_shape), device=device)
        with noise.use(None, temperature=c.sample_temperature):
            draws = noise.Record(noise.as_source(None))
            with noise.use(draws):
                student_samples = self.student.transform.inverse(z, context)[0]
            teacher_noise = noise.Replay(draws.draws) if c.shared_split_noise else None
            with torch.no_grad(), noise.use(teacher_noise):
                teacher_samples = self.teacher.transform.inverse(z, context)[0]
            finite = _finite_rows(student_samples) & _finite_rows(teacher_samples)
            if finite.all():
                return skd_loss(teacher_samples, student_samples, c.sample_distance)
            if not finite.any():
                return torch.zeros((), device=device)
            with noise.use(noise.Replay([draw[finite] for draw in draws.draws])):
                student_samples = self.student.transform.inverse(
                    z[finite], context[finite] if context is not None else None)[0]
        return skd_loss(teacher_samples[finite], student_samples, c.sample_distance) * (finite.sum() / n)

    def state(self) -> dict[str, Any]:
        """The pairing, for ``distill.json``."""
        return {"pairs": [[p.level, p.student, p.teacher] for p in self.pairing.pairs]}


def _finite_rows(samples: Tensor) -> Tensor:
    """Whether each sample (row) is finite in every dimension, shape ``(batch,)``."""
    return torch.isfinite(samples.detach().flatten(1)).all(dim=1)


def _capture_if(enabled: bool, flow: nn.Module, names: list[str],
                factored_out: bool) -> AbstractContextManager[dict[str, Tensor]]:
    return capture(flow, names, factored_out) if enabled else nullcontext({})
