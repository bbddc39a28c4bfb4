"""My flow's layer and flow pass nfkit-core's conformance suite; the plugin registers and builds it."""

import torch
from nf_my_flow import HalfAffineCoupling, MyFlowConfig, build_my_flow

from nfkit_core.plugins import DataInfo, get_registry
from nfkit_core.testing import check_flow, check_transform


def test_coupling_layer_passes_the_conformance_suite():
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    # the suite perturbs the zero-initialised net first, so it checks a coupling that is not the identity
    errors = check_transform(lambda: HalfAffineCoupling(5, hidden=8), x)
    assert errors["roundtrip"] < 1e-5 and errors["log_det_vs_jacobian"] < 1e-6


def test_flow_passes_the_conformance_suite():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    check_flow(build_my_flow(MyFlowConfig(couplings=3, hidden=8), DataInfo((3,))), x)


def test_the_plugin_registers_my_flow():
    registry = get_registry()
    spec = registry.architectures.get("my-flow")
    flow = registry.build_flow("my-flow", spec.make_config("toy2d"), DataInfo((2,)))
    assert flow.log_prob(torch.zeros(3, 2)).shape == (3,)
