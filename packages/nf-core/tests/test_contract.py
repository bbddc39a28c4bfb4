"""The contract: the Bijector and Flow protocols, log-det shapes checked where they are summed, flow-level bugs
caught by ``check_flow``, sampling options through ``Sequential.inverse``, and the ``validate_args`` switch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import nfkit_core.layers as layers
from nfkit_core import Bijector, Flow, NormalizingFlow, Sequential, StandardNormal, Transform, validation
from nfkit_core.layers import ActNorm, AffineCoupling, Split, UniformDequantization
from nfkit_core.layers.conditioning import zero_init
from nfkit_core.plugins import DataInfo
from nfkit_core.testing import check_flow
from nfkit_core.testing.tiny import TinyConfig, build_tiny

X = torch.randn(3, 4)
LEVELS = torch.randint(0, 5, (3, 4), generator=torch.Generator().manual_seed(0)).float()


class Coupling(Transform):
    """``z_b = x_b * exp(s(x_a))`` on 4 features, with a correct log-det; subclasses break one thing each as a
    plugin author might."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 2)

    def log_scale(self, x_a: Tensor) -> Tensor:
        return torch.tanh(self.net(x_a))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = x.chunk(2, dim=1)
        s = self.log_scale(x_a)
        return torch.cat([x_a, x_b * s.exp()], dim=1), s.sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None, **options) -> tuple[Tensor, Tensor]:
        z_a, z_b = z.chunk(2, dim=1)
        s = self.log_scale(z_a)
        return torch.cat([z_a, z_b * torch.exp(-s)], dim=1), -s.sum(dim=1)


class UnsummedLogDet(Coupling):
    def forward(self, x, context=None):
        z, _ = super().forward(x)
        return z, self.log_scale(x.chunk(2, dim=1)[0])  # (batch, 2): not summed over the event


class HalvedLogDet(Coupling):
    def forward(self, x, context=None):
        z, log_det = super().forward(x)
        return z, log_det / 2

    def inverse(self, z, context=None, **options):
        x, log_det = super().inverse(z)
        return x, log_det / 2


class WrongSignInverse(Coupling):
    def inverse(self, z, context=None, **options):
        z_a, z_b = z.chunk(2, dim=1)
        s = self.log_scale(z_a)
        return torch.cat([z_a, z_b * torch.exp(s)], dim=1), -s.sum(dim=1)


def flow_of(layer: Transform) -> NormalizingFlow:
    torch.manual_seed(0)
    return NormalizingFlow(Sequential({"coupling": layer, "actnorm": ActNorm(4)}), StandardNormal((4,)))


def multiscale_flow_of(layer: Transform) -> NormalizingFlow:
    """The layer between a split and a dequantizer: the flow is stochastic, so only the part checks can see it."""
    torch.manual_seed(0)
    steps = Sequential({"coupling": layer, "split": Split(2, num_channels=4), "actnorm": ActNorm(2)})
    return NormalizingFlow(steps, StandardNormal((2,)), UniformDequantization(5, -1.0, 1.0), data_shape=(4,))


def test_a_correct_flow_passes_both_ways():
    errors = check_flow(flow_of(Coupling()), X)
    assert errors["transform_inverse"] < 1e-5 and errors["log_det_vs_jacobian"] < 1e-6
    errors = check_flow(multiscale_flow_of(Coupling()), LEVELS)
    assert errors["log_det_vs_jacobian"] < 1e-6


def test_an_unsummed_log_det_is_an_error_naming_the_layer():
    flow = flow_of(UnsummedLogDet())
    message = (r"step 'coupling' \(UnsummedLogDet\) returned a log_det of shape \(3, 2\); a layer must return one "
               r"number per sample, shape \(3,\)")
    with pytest.raises(ValueError, match=message):
        flow.log_prob(X)
    with pytest.raises(AssertionError, match="log_prob: the model raised ValueError: " + message):
        check_flow(flow, X)
    # a batch of 2 would have broadcast silently before the check
    with pytest.raises(ValueError, match=r"returned a log_det of shape \(2, 2\)"):
        flow.log_prob(X[:2])


@pytest.mark.parametrize("make_flow, x, part", [(flow_of, X, "transform"), (multiscale_flow_of, LEVELS, "coupling")])
def test_a_halved_log_det_fails_check_flow(make_flow, x, part):
    with pytest.raises(AssertionError, match=rf"log_det_vs_jacobian\[{part}\]: sample 0: log_det .* vs log\|det J\|"):
        check_flow(make_flow(HalvedLogDet()), x)


@pytest.mark.parametrize("make_flow, x, check", [
    (flow_of, X, r"latent_roundtrip: latent_to_data\(transform_to_latent\(x\)\) vs x"),
    (multiscale_flow_of, LEVELS, r"roundtrip\[transform:coupling\]: inverse\(forward\(x\)\) vs x")])
def test_a_wrong_sign_inverse_fails_check_flow(make_flow, x, check):
    with pytest.raises(AssertionError, match=check):
        check_flow(make_flow(WrongSignInverse()), x)


def test_check_flow_names_the_check_of_a_model_error():
    class Crashes(Coupling):
        def inverse(self, z, context=None, **options):
            raise RuntimeError("shapes do not match")

    with pytest.raises(AssertionError, match="sample: the model raised RuntimeError: shapes do not match"):
        check_flow(flow_of(Crashes()), X)


def test_layers_must_accept_sampling_options():
    class NoOptions(Coupling):
        def inverse(self, z, context=None):
            return super().inverse(z, context)

    with pytest.raises(AssertionError, match=r"inverse_options: inverse\(z, context, \*\*options\) must accept"):
        check_flow(flow_of(NoOptions()), X)


def test_shipped_layers_and_flows_satisfy_the_protocols():
    for name in layers.__all__:
        assert issubclass(getattr(layers, name), Transform), name
    assert isinstance(layers.ActNorm(3), Bijector) and isinstance(Sequential(), Bijector)
    flow = build_tiny(TinyConfig(), DataInfo((1, 4, 4)))
    assert isinstance(flow, Flow) and isinstance(flow, NormalizingFlow)
    assert not isinstance(nn.Linear(2, 2), Flow)
    assert (flow.noise_std, flow.dequantizes) == (0.0, False)
    flow = build_tiny(TinyConfig(dequantize=True), DataInfo((1, 4, 4), num_bins=17))
    assert flow.dequantizes


def test_check_flow_refuses_what_is_not_a_flow():
    class Bare(nn.Module):
        def log_prob(self, x, context=None):
            return x.sum(1)

    with pytest.raises(AssertionError, match=r"flow_protocol: Bare is not a torch.nn.Module satisfying nfkit_core"):
        check_flow(Bare(), X)


class Offset(Transform):
    """Identity forward; the inverse adds the sampling option ``offset``."""

    inverse_options = ("offset",)

    def forward(self, x, context=None):
        return x, x.new_zeros(x.shape[0])

    def inverse(self, z, context=None, *, offset: float = 0.0, **options):
        return z + offset, z.new_zeros(z.shape[0])


def test_sampling_options_reach_nested_layers_through_sequential():
    inner = Sequential({"offset": Offset(), "actnorm": ActNorm(4)})
    flow = NormalizingFlow(Sequential({"inner": inner, "coupling": Coupling()}), StandardNormal((4,)))
    plain = flow.sample(5, generator=torch.Generator().manual_seed(0))
    shifted = flow.sample(5, generator=torch.Generator().manual_seed(0), offset=1.5)
    torch.testing.assert_close(shifted - plain, torch.full_like(plain, 1.5))
    assert flow.sampling_options() == {"denoise", "offset"}
    with pytest.raises(ValueError, match=r"NormalizingFlow.sample\(\) takes no option\(s\) \['ofset'\]; its options: "
                                         r"denoise, offset"):
        flow.sample(5, ofset=1.5)


class FeatureShift(Transform):
    """Adds its internal input ``features`` in both directions (minus in the inverse); records what it was given."""

    internal_inputs = ("features",)

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, context=None, *, features):
        self.seen.append(("forward", context, features))
        return x + features, x.new_zeros(x.shape[0])

    def inverse(self, z, context=None, *, features, **options):
        self.seen.append(("inverse", context, features))
        return z - features, z.new_zeros(z.shape[0])


def test_internal_inputs_reach_only_the_steps_that_name_them_and_never_the_context():
    shift = FeatureShift()
    flow = Sequential({"inner": Sequential({"shift": shift, "actnorm": ActNorm(4)}), "offset": Offset()})
    assert flow.internal_inputs == ("features",) and flow["inner"].internal_inputs == ("features",)
    x, features, labels = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 0])
    z, _ = flow(x, labels, features=features)
    back, _ = flow.inverse(z, labels, features=features, offset=0.0)
    torch.testing.assert_close(back, x)
    assert [(direction, c is labels, f is features) for direction, c, f in shift.seen] == [
        ("forward", True, True), ("inverse", True, True)]
    with pytest.raises(TypeError, match=r"no step of this Sequential takes the internal input\(s\) \['feature'\]; "
                                        r"its steps take \['features'\]"):
        flow(x, feature=features)


def test_coupling_conditioner_sees_the_features_joined_to_its_half():
    conditioner = nn.Conv2d(3, 4, 1)
    coupling = AffineCoupling(conditioner)
    x, features = torch.randn(2, 4, 3, 3), torch.randn(2, 1, 3, 3)
    z, log_det = coupling(x, features=features)
    log_s, shift = conditioner(torch.cat([x[:, :2], features], dim=1)).chunk(2, dim=1)
    torch.testing.assert_close(z, torch.cat([x[:, :2], x[:, 2:] * log_s.exp() + shift], dim=1))
    torch.testing.assert_close(log_det, log_s.sum(dim=(1, 2, 3)))
    torch.testing.assert_close(coupling.inverse(z, features=features)[0], x)


def test_denoising_is_tweedies_step_and_needs_a_noise_level():
    torch.manual_seed(0)
    flow = NormalizingFlow(Sequential(Coupling()), StandardNormal((4,)), noise_std=0.5)
    x = torch.randn(3, 4)
    torch.testing.assert_close(flow.denoise(x), x + 0.25 * flow.score(x))
    # for N(0, I) data, the score of a standard-normal flow is -x
    identity = NormalizingFlow(Sequential(), StandardNormal((4,)), noise_std=0.5)
    torch.testing.assert_close(identity.denoise(x), 0.75 * x)
    with pytest.raises(ValueError, match="not trained with noise augmentation"):
        NormalizingFlow(Sequential(), StandardNormal((4,))).sample(2, denoise=True)
    with pytest.raises(ValueError, match="noise augmentation"):
        NormalizingFlow(Sequential(), StandardNormal((4,)), UniformDequantization(5), noise_std=0.1)


def test_validate_args_switches_off_only_the_data_dependent_checks():
    flow = flow_of(Coupling())
    nan = torch.tensor([[0.0, float("nan"), 0.0, 0.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        flow.log_prob(nan)
    with validation.validate_args(False):
        assert torch.isnan(flow.log_prob(nan)).all()
        with pytest.raises(ValueError, match=r"expects data of shape \(batch, 4\)"):
            flow.log_prob(torch.randn(2, 3))  # shape checks always run
        levels = UniformDequantization(5)
        levels(torch.full((2, 3), 7.0))  # out-of-range levels pass unchecked
    assert validation.validating()
    with pytest.raises(ValueError, match=r"integer levels in \[0, 5\)"):
        UniformDequantization(5)(torch.full((2, 3), 7.0))
    validation.set_validate_args(False)
    try:
        assert not validation.validating()
        assert torch.isnan(flow.log_prob(nan)).all()
    finally:
        validation.set_validate_args(True)


def test_class_labels_are_checked_in_one_place():
    labels = torch.tensor([0, 2])
    assert torch.equal(validation.check_class_labels("X", labels, 3, 2), labels)
    with pytest.raises(ValueError, match=r"X: class labels must lie in \[0, 3\) or -1 for 'no label', got values "
                                         r"from -2 to 0"):
        validation.check_class_labels("X", torch.tensor([-2, 0]), 3, 2, allow_missing=True)
    with pytest.raises(TypeError, match="X needs class labels as an integer tensor"):
        validation.check_class_labels("X", torch.tensor([0.0, 1.0]), 3, 2)
    with validation.validate_args(False):
        validation.check_class_labels("X", torch.tensor([5, 0]), 3, 2)


def test_split_loads_checkpoints_of_its_old_parameter_name():
    torch.manual_seed(0)
    split = Split(2, conditioner=zero_init(nn.Linear(2, 4)))
    nn.init.normal_(split.conditioner.weight)
    old = {key.replace("conditioner.", "conditional_net."): value for key, value in split.state_dict().items()}
    assert set(old) == {"conditional_net.weight", "conditional_net.bias"}
    loaded = Split(2, conditioner=nn.Linear(2, 4))
    loaded.load_state_dict(old)
    assert torch.equal(loaded.conditioner.weight, split.conditioner.weight)
    wrapped = Sequential({"split": Split(2, conditioner=nn.Linear(2, 4))})
    wrapped.load_state_dict({f"transforms.split.{key}": value for key, value in old.items()})
    assert torch.equal(wrapped[0].conditioner.weight, split.conditioner.weight)


def test_zero_init_makes_a_coupling_start_as_the_identity():
    coupling = AffineCoupling(zero_init(nn.Linear(2, 4)))
    x = torch.randn(3, 4)
    z, log_det = coupling(x)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(3))
    assert not zero_init(nn.Linear(2, 2, bias=False)).weight.any()
