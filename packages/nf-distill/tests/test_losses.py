"""LKD, ILKD, SKD and eq. 15 against values computed by hand on two tiny flows of known maps."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor

from nfkit_core import NormalizingFlow, Sequential, StandardNormal, Transform, noise
from nfkit_distill import DistillationConfig, LKDConfig, build_objective, ilkd_loss, lkd_loss, skd_loss
from nfkit_distill.losses import distance


class ScaleShift(Transform):
    """``y = a x + b`` with fixed ``a``, ``b`` and a learnable dummy (so that the student has parameters)."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = self.scale * x + self.shift + self.dummy
        return y, x.new_full((x.shape[0],), x.shape[1] * math.log(abs(self.scale)))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (z - self.shift - self.dummy) / self.scale, z.new_full((z.shape[0],), -z.shape[1] * math.log(
            abs(self.scale)))


def pair_of_flows() -> tuple[NormalizingFlow, NormalizingFlow]:
    """Teacher ``a: 2x, b: +1``; student ``a: 3x, b: -1``; one level of two matchable steps each."""
    teacher = NormalizingFlow(Sequential({"a": ScaleShift(2.0, 0.0), "b": ScaleShift(1.0, 1.0)}), StandardNormal((2,)))
    student = NormalizingFlow(Sequential({"a": ScaleShift(3.0, 0.0), "b": ScaleShift(1.0, -1.0)}), StandardNormal((2,)))
    teacher.matchable_intermediates = student.matchable_intermediates = [["a", "b"]]
    return teacher, student


X = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
# t_a = [[2, 4], [0, -2]], t_b = [[3, 5], [1, -1]]; s_a = [[3, 6], [0, -3]], s_b = [[2, 5], [-1, -4]]
# squared differences averaged per sample: pair a (2.5, 0.5), pair b (0.5, 6.5); absolute: pair b (0.5, 2.5)


def test_distances_are_per_sample_means_over_the_non_batch_dimensions():
    t, s = torch.tensor([[3.0, 5.0], [1.0, -1.0]]), torch.tensor([[2.0, 5.0], [-1.0, -4.0]])
    assert distance(t, s, "mse").tolist() == [0.5, 6.5]
    assert distance(t, s, "l1").tolist() == [0.5, 2.5]
    assert lkd_loss(t, s, "mse").item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="distance must be one of"):
        distance(t, s, "l2")


def test_ilkd_sums_pairs_divides_by_their_number_then_averages_the_batch():
    t = [torch.tensor([[2.0, 4.0], [0.0, -2.0]]), torch.tensor([[3.0, 5.0], [1.0, -1.0]])]
    s = [torch.tensor([[3.0, 6.0], [0.0, -3.0]]), torch.tensor([[2.0, 5.0], [-1.0, -4.0]])]
    # per sample: ((2.5 + 0.5) / 2, (0.5 + 6.5) / 2) = (1.5, 3.5)
    assert ilkd_loss(t, s, "mse").item() == pytest.approx(2.5)


def test_skd_zeroes_non_finite_per_sample_terms():
    t = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    s = torch.tensor([[1.0, 3.0], [float("nan"), 0.0], [1.0, 1.0]])
    assert skd_loss(t, s, "l1").item() == pytest.approx(2.0 / 3)


def test_objective_on_the_tiny_pair_matches_the_hand_computed_terms():
    teacher, student = pair_of_flows()
    config = DistillationConfig(nll_weight=0.9, latent_weight=0.1, nll_unit="nats")
    objective = build_objective(config, teacher, student, X)
    assert [(p.teacher, p.student) for p in objective.pairing.pairs] == [("a", "a"), ("b", "b")]
    loss, log_prob, terms = objective(student, X)
    assert terms["latent"].item() == pytest.approx(2.5)
    # student log p(x): N(s_b; 0, I) + 2 log 3
    expected = (-0.5 * torch.tensor([[2.0, 5.0], [-1.0, -4.0]]).square().sum(1) - math.log(2 * math.pi)
                + 2 * math.log(3.0))
    torch.testing.assert_close(log_prob, expected)
    assert terms["nll"].item() == pytest.approx(-expected.mean().item())
    assert loss.item() == pytest.approx(0.9 * terms["nll"].item() + 0.1 * 2.5)
    bpd = build_objective(DistillationConfig(nll_unit="bpd"), teacher, student, X)(student, X)[2]["nll"]
    assert bpd.item() == pytest.approx(-expected.mean().item() / (2 * math.log(2)))


def test_lkd_matches_the_final_latents_only():
    teacher, student = pair_of_flows()
    objective = build_objective(LKDConfig(), teacher, student, X)
    assert [(p.teacher, p.student) for p in objective.pairing.pairs] == [("b", "b")]
    assert objective(student, X)[2]["latent"].item() == pytest.approx(3.5)
    l1 = build_objective(LKDConfig(latent_distance="l1"), teacher, student, X)
    assert l1(student, X)[2]["latent"].item() == pytest.approx(1.5)


def test_skd_decodes_one_latent_with_both_flows():
    teacher, student = pair_of_flows()
    config = DistillationConfig(nll_weight=1.0, latent_weight=0.0, sample_weight=1.0)
    objective = build_objective(config, teacher, student, X)
    z = torch.tensor([[1.0, 4.0]])
    with noise.use(noise.Replay([z])):
        value = objective.sample_loss(1, None, torch.device("cpu"))
    # teacher^-1(z) = (z - 1) / 2 = (0, 1.5); student^-1(z) = (z + 1) / 3 = (2/3, 5/3); L1 = (2/3 + 1/6) / 2
    assert value.item() == pytest.approx(5 / 12)


class ExpDecoder(Transform):
    """``y = log(x) - c``, decoded by ``x = exp(z + c)``, which overflows for ``z`` near 89 in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.c = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.log() - self.c, -x.log().sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = (z + self.c).exp()
        return x, x.log().sum(dim=1)


def test_skd_keeps_a_sample_that_overflows_out_of_the_gradient():
    teacher = NormalizingFlow(Sequential({"a": ScaleShift(1.0, 0.0)}), StandardNormal((2,)))
    decoder = ExpDecoder()
    student = NormalizingFlow(Sequential({"a": decoder}), StandardNormal((2,)))
    teacher.matchable_intermediates = student.matchable_intermediates = [["a"]]
    config = DistillationConfig(nll_weight=1.0, latent_weight=0.0, sample_weight=1.0)
    objective = build_objective(config, teacher, student, torch.tensor([[1.0, 2.0], [0.5, 3.0]]))
    z = torch.tensor([[0.0, 1.0], [100.0, 0.0]])  # the student decodes the second row to (inf, 1)
    with noise.use(noise.Replay([z])):
        value = objective.sample_loss(2, None, torch.device("cpu"))
    value.backward()
    # Row 1 alone: L1 of (1, e) against (0, 1) is (1 + (e - 1)) / 2, halved for the dropped row; d/dc of that is
    # (exp(0) + exp(1)) / 4, where the dropped row's exp(100) would have made it NaN.
    assert value.item() == pytest.approx(math.e / 4)
    assert decoder.c.grad.item() == pytest.approx((1 + math.e) / 4)

def test_weights_and_choices_are_checked():
    with pytest.raises(ValueError, match="nll_unit"):
        DistillationConfig(nll_unit="bits")
    with pytest.raises(ValueError, match="not all 0"):
        DistillationConfig(nll_weight=0, latent_weight=0, sample_weight=0)


def test_a_student_identical_to_its_teacher_has_zero_distillation_loss():
    teacher, _ = pair_of_flows()
    student = copy.deepcopy(teacher)
    config = DistillationConfig(nll_weight=1.0, latent_weight=1.0, sample_weight=1.0, shared_split_noise=True)
    objective = build_objective(config, teacher, student, X)
    _, _, terms = objective(student, X)
    assert terms["latent"].item() == 0.0
    assert terms["sample"].item() == 0.0
