"""The nfkit-core conformance suite on TarFlow's layers and on whole TarFlow models."""

from __future__ import annotations

import pytest
import torch

from nfkit_core.testing import check_flow, check_transform
from nfkit_tarflow import Patchify, TarFlowBlock


def test_patchify_conforms():
    errors = check_transform(lambda: Patchify(2, (3, 4, 6)), torch.randn(3, 3, 4, 6))
    assert errors["roundtrip"] == 0.0 and errors["log_det_vs_jacobian"] < 1e-12


@pytest.mark.parametrize("nvp", [True, False])
@pytest.mark.parametrize("flip", [False, True])
def test_block_conforms(nvp, flip):
    def make() -> TarFlowBlock:
        torch.manual_seed(0)
        return TarFlowBlock(token_dim=3, num_tokens=5, channels=16, num_layers=2, head_dim=8, nvp=nvp, flip=flip)

    errors = check_transform(make, torch.randn(3, 5, 3))
    assert errors["roundtrip"] < 1e-5 and errors["log_det_vs_jacobian"] < 1e-6


def test_conditional_block_conforms():
    def make() -> TarFlowBlock:
        torch.manual_seed(0)
        return TarFlowBlock(token_dim=3, num_tokens=5, channels=16, num_layers=1, head_dim=8, num_classes=4)

    errors = check_transform(make, torch.randn(4, 5, 3), torch.tensor([0, 3, -1, 1]))
    assert errors["context_change"] > 1e-4


@pytest.mark.parametrize("nvp", [True, False])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_flow_conforms(make_flow, nvp, num_classes):
    flow = make_flow(nvp=nvp, num_classes=num_classes, shape=(1, 4, 4))
    context = torch.tensor([0, 2, 1]) if num_classes else None
    errors = check_flow(flow, torch.randn(3, 1, 4, 4), context)
    assert errors["latent_roundtrip"] < 1e-5
