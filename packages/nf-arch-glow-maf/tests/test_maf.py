"""MAF: the Gaussian MADE bijection and whole flows pass the nfkit-core conformance suite; structure as in the paper."""

import math

import pytest
import torch

from nfkit_core import Sequential
from nfkit_core.layers import BatchNorm
from nfkit_core.plugins import DataInfo
from nfkit_core.testing import check_flow, check_transform
from nfkit_glow_maf import MADE, Flatten, MAFConfig, MaskedAutoregressiveTransform, build_maf
from nfkit_glow_maf.maf import PRESETS as MAF_PRESETS


def made_transform(features, **kwargs):
    def make():
        torch.manual_seed(0)
        return MaskedAutoregressiveTransform(MADE(features, [12, 12], generator=torch.Generator().manual_seed(0),
                                                  **kwargs))
    return make


@pytest.mark.parametrize("features,kwargs", [
    (2, {}),
    (5, {"order": "random", "hidden_mode": "random", "activation": "tanh"}),
    (7, {"order": [7, 1, 6, 2, 5, 3, 4]}),
])
def test_masked_autoregressive_transform_conforms(features, kwargs):
    errors = check_transform(made_transform(features, **kwargs), torch.randn(4, features))
    assert errors["log_det_vs_jacobian"] < 1e-8


def test_a_single_feature_is_a_learned_affine_map():
    # the hidden layer sees no input (all masks zero), so its weights get no gradient
    check_transform(made_transform(1), torch.randn(4, 1), allow_zero_grad={"made.hidden.0.weight"})


@pytest.mark.parametrize("kwargs,context", [
    ({"num_classes": 3}, torch.tensor([0, 2, 1, 2])),
    ({"context_features": 2}, torch.randn(4, 2)),
])
def test_conditional_made_transform_conforms(kwargs, context):
    check_transform(made_transform(4, **kwargs), torch.randn(4, 4), context)


def test_log_det_is_half_the_summed_log_precision():
    torch.manual_seed(0)
    layer = made_transform(3)()
    x = torch.randn(5, 3)
    mean, log_precision = layer.made(x).unbind(1)
    u, log_det = layer(x)
    torch.testing.assert_close(u, (x - mean) * torch.exp(0.5 * log_precision))
    torch.testing.assert_close(log_det, 0.5 * log_precision.sum(1))


def test_mades_reverse_the_order_and_batch_norm_follows_each():
    flow = build_maf(MAFConfig(num_layers=3, hidden_features=8), DataInfo((4,)))
    layers = [flow.transform[f"layer{i}"] for i in range(3)]
    assert [layer["made"].made.degrees.tolist() for layer in layers] == [[1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4]]
    assert all(isinstance(layer["batch_norm"], BatchNorm) for layer in layers)
    random = build_maf(MAFConfig(num_layers=2, hidden_features=8, input_order="random", order_seed=3), DataInfo((6,)))
    first, second = (random.transform[f"layer{i}"]["made"].made.degrees for i in range(2))
    assert not torch.equal(first, second) and not torch.equal(first, second.flip(0))


@pytest.mark.parametrize("config,data,context", [
    (MAFConfig(num_layers=3, hidden_features=16), DataInfo((5,)), None),
    (MAFConfig(num_layers=2, hidden_features=16, batch_norm=False, activation="tanh", input_order="random",
               hidden_degrees="random"), DataInfo((3,)), None),
    (MAFConfig(num_layers=2, hidden_features=16), DataInfo((1, 4, 4), num_classes=3, num_bins=17),
     torch.tensor([0, 1, 2, 1, 0, 2])),
    (MAFConfig(num_layers=2, hidden_features=16, context_features=3), DataInfo((4,)), torch.randn(6, 3)),
])
def test_maf_flows_conform(config, data, context):
    torch.manual_seed(0)
    flow = build_maf(config, data)
    check_flow(flow, torch.randn(6, *data.shape), context)


def test_the_flow_in_eval_mode_is_the_paper_density():
    """log p(x) = log N(u; 0, I) + sum of layer log-dets, with batch norm at its running statistics (MAF, eq. 5)."""
    torch.manual_seed(0)
    flow = build_maf(MAFConfig(num_layers=2, hidden_features=8), DataInfo((3,)))
    x = torch.randn(10, 3)
    flow.train()
    flow.log_prob(x)  # moves the running statistics away from (0, 1)
    flow.eval()
    u, total = x, torch.zeros(10)
    for name in ("layer0", "layer1"):
        made, bn = flow.transform[name]["made"].made, flow.transform[name]["batch_norm"]
        mean, log_precision = made(u).unbind(1)
        u = (u - mean) * torch.exp(0.5 * log_precision)
        total += 0.5 * log_precision.sum(1)
        u = (u - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.log_gamma.exp() + bn.beta
        total += (bn.log_gamma - 0.5 * torch.log(bn.running_var + bn.eps)).sum()
    expected = -0.5 * (u ** 2).sum(1) - 1.5 * math.log(2 * math.pi) + total
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_images_are_flattened_and_intermediates_are_per_layer():
    flow = build_maf(MAFConfig(num_layers=2, hidden_features=8), DataInfo((1, 2, 3)))
    assert isinstance(flow.transform["flatten"], Flatten)
    outputs = flow.intermediates(torch.randn(4, 1, 2, 3))
    assert list(outputs) == ["flatten", "layer0", "layer1"]
    assert all(value.shape == (4, 6) for value in outputs.values())
    assert isinstance(flow.transform, Sequential)


def test_presets_build():
    for name, values in MAF_PRESETS.items():
        config = MAFConfig(**values)
        assert config.num_layers == 5, name
    flow = build_maf(MAFConfig(**MAF_PRESETS["tabular-small"]), DataInfo((6,)))
    assert flow.sample(3).shape == (3, 6)


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="activation"):
        MAFConfig(activation="swish")
    with pytest.raises(ValueError, match="input_order"):
        MAFConfig(input_order="reversed")
    with pytest.raises(ValueError, match="not both"):
        build_maf(MAFConfig(context_features=2), DataInfo((4,), num_classes=3))
    layer = made_transform(3)()
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        layer(torch.zeros(2, 4))
