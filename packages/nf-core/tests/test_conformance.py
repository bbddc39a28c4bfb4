"""The conformance suite catches each kind of broken layer or flow, with a message naming the check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from nfkit_core import NormalizingFlow, Sequential, StandardNormal, Transform, noise
from nfkit_core.layers import ActNorm, AffineCoupling, BatchNorm
from nfkit_core.testing import check_flow, check_transform


class Scale(Transform):
    """``z = 2 x`` with a correct log-det; subclasses break one thing each."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return 2 * x, torch.full((x.shape[0],), x[0].numel() * math.log(2.0))

    def inverse(self, z: Tensor, context: Tensor | None = None, **options) -> tuple[Tensor, Tensor]:
        return z / 2, torch.full((z.shape[0],), -z[0].numel() * math.log(2.0))


class WrongLogDet(Scale):
    def forward(self, x, context=None):
        return 2 * x, x.new_zeros(x.shape[0])

    def inverse(self, z, context=None, **options):
        return z / 2, z.new_zeros(z.shape[0])


class NotInverse(Scale):
    def inverse(self, z, context=None, **options):
        return z / 3, super().inverse(z)[1]


class InverseLogDetSign(Scale):
    def inverse(self, z, context=None, **options):
        return z / 2, -super().inverse(z)[1]


class ScalarLogDet(Scale):
    def forward(self, x, context=None):
        return 2 * x, torch.tensor(0.0)


class BatchSizeDependent(Transform):
    def forward(self, x, context=None):
        return x + x.shape[0], x.new_zeros(x.shape[0])

    def inverse(self, z, context=None, **options):
        return z - z.shape[0], z.new_zeros(z.shape[0])


class TrainEvalMismatch(Transform):
    def forward(self, x, context=None):
        factor = 2.0 if self.training else 1.0
        return x * factor, torch.full((x.shape[0],), x[0].numel() * math.log(factor))

    def inverse(self, z, context=None, **options):
        factor = 2.0 if self.training else 1.0
        return z / factor, torch.full((z.shape[0],), -z[0].numel() * math.log(factor))


class Shift(Transform):
    """``z = x + shift`` with a learned shift; ``unused`` is a parameter cut off from the output."""

    def __init__(self, channels: int, unused: bool = False) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))
        if unused:
            self.unused = nn.Parameter(torch.zeros(channels))

    def forward(self, x, context=None):
        return x + self.shift, x.new_zeros(x.shape[0])

    def inverse(self, z, context=None, **options):
        return z - self.shift, z.new_zeros(z.shape[0])


class ForgetfulActNorm(ActNorm):
    """Keeps its initialisation flag outside the state dict, so a reloaded copy initialises itself again."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        del self.initialized
        self.initialized = False

    def initialize(self, x):
        dims = [d for d in range(x.dim()) if d != 1]
        with torch.no_grad():
            self.shift.copy_(-x.mean(dims))
            self.log_scale.copy_(-torch.log(x.std(dims, unbiased=False)))
        self.initialized = True


class NoisyAugment(Transform):
    """Appends noise channels with ``-log q`` as log-det; ``source`` says where the noise comes from."""

    is_bijective = False

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def forward(self, x, context=None):
        shape = (1 if self.source == "shared" else x.shape[0], *x.shape[1:])
        eps = torch.randn(shape) if self.source == "torch" else noise.randn(shape)
        eps = eps.expand_as(x)
        if self.source == "unused":
            eps = torch.zeros_like(x)
        log_q = (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi)).reshape(x.shape[0], -1).sum(1)
        return torch.cat([x, eps], dim=1), -log_q

    def inverse(self, z, context=None, **options):
        x, eps = z.chunk(2, dim=1)
        return x, (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi)).reshape(z.shape[0], -1).sum(1)


X = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))


def test_a_correct_layer_passes_and_reports_its_errors():
    errors = check_transform(Scale, X)
    assert errors["log_det_vs_jacobian"] < 1e-6 and errors["roundtrip"] == 0.0


@pytest.mark.parametrize("make, message", [
    (WrongLogDet, r"log_det_vs_jacobian: sample 0: log_det 0 vs log\|det J\| 2.77259"),
    (NotInverse, r"roundtrip\[train\]: inverse\(forward\(x\)\) vs x: max abs error"),
    (InverseLogDetSign, r"roundtrip\[train\]: inverse log_det vs -forward log_det: max abs error 5.5"),
    (ScalarLogDet, r"forward_outputs: log_det has shape \(\), expected \(3,\)"),
    (BatchSizeDependent, r"per_sample_independence\[forward\]: sample 0 alone vs in the batch: output: max abs err"),
    (TrainEvalMismatch, "train_eval_agreement: eval-mode output vs train-mode output"),
    (lambda: Shift(4, unused=True), "gradients\\[forward\\]: parameter 'unused' got no gradient"),
    (lambda: ForgetfulActNorm(4), r"state_dict\[train\]: forward outputs of the original and the reloaded layer are "
                                  r"not identical"),
    (lambda: BatchNorm(4), r"roundtrip\[train\]"),
    (lambda: NoisyAugment("torch"), r"deterministic\[forward\]: outputs of two passes drawing no nfkit_core.noise"),
    (lambda: NoisyAugment("unused"), r"noise_seeded\[forward\]: a different seed gave identical results"),
    (lambda: NoisyAugment("shared"), r"per_sample_independence\[forward\]: noise draws \[\(1, 4\)\] do not start"),
])
def test_each_broken_layer_fails_the_named_check(make, message):
    with pytest.raises(AssertionError, match=message):
        check_transform(make, X)


def test_context_must_matter_unless_told_otherwise():
    with pytest.raises(AssertionError, match="context_used: shuffling the contexts across the batch changed the "
                                             "output by only 0"):
        check_transform(Scale, X, context=torch.tensor([0, 1, 2]))
    check_transform(Scale, X, context=torch.tensor([0, 1, 2]), uses_context=False)


def test_zero_initialised_networks_are_checked_after_perturbation():
    """Without the perturbation the first layer of a zero-output conditioner gets an all-zero gradient."""

    def make():
        net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 4))
        nn.init.zeros_(net[2].weight)
        nn.init.zeros_(net[2].bias)
        return AffineCoupling(net)

    check_transform(make, X)
    layer = make()
    z, log_det = layer(X)
    ((torch.randn_like(z) * z).sum() + log_det.sum()).backward()
    assert layer.conditioner[0].weight.grad.abs().max() == 0


class NoDrawPrior(StandardNormal):
    """Samples with torch.randn instead of nfkit_core.noise, so that a seeded generator does not reproduce it."""

    def sample(self, n, context=None):
        return torch.randn(n, *self.event_shape)


class WrongBitsFlow(NormalizingFlow):
    def bits_per_dim(self, x, context=None, *, noise=None):
        return -self.log_prob(x, context, noise=noise) / self.num_dims


def test_check_flow_catches_broken_flows():
    check_flow(NormalizingFlow(Sequential(Scale()), StandardNormal((4,))), X)
    with pytest.raises(AssertionError, match="bits_per_dim: bits_per_dim vs -log_prob / \\(D ln 2\\)"):
        check_flow(WrongBitsFlow(Sequential(Scale()), StandardNormal((4,))), X)
    with pytest.raises(AssertionError, match="sample: samples from the same seeded generator are not identical"):
        check_flow(NormalizingFlow(Sequential(Scale()), NoDrawPrior((4,))), X)
    with pytest.raises(AssertionError, match="latent_roundtrip"):
        check_flow(NormalizingFlow(Sequential(NotInverse()), StandardNormal((4,))), X)
    with pytest.raises(AssertionError, match="gradients: parameter 'transform.transforms.0.unused' got no gradient"):
        check_flow(NormalizingFlow(Sequential(Shift(4, unused=True)), StandardNormal((4,))), X)
