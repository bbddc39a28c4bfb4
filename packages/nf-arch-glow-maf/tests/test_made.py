"""MADE: degrees, masks and the autoregressive property of its outputs."""

import pytest
import torch

from nfkit_glow_maf.made import MADE, hidden_degrees, input_degrees


def output_jacobian(made: MADE, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """``d output[p, i] / d x[j]`` of one sample, shape ``(P, D, D)``."""
    return torch.autograd.functional.jacobian(lambda v: made(v[None], context)[0], x)


@pytest.mark.parametrize("order", ["sequential", "random", [3, 1, 4, 2, 5]])
def test_outputs_depend_exactly_on_the_inputs_of_smaller_degree(order):
    torch.manual_seed(0)
    made = MADE(5, [16, 16], order=order, activation="tanh", generator=torch.Generator().manual_seed(1))
    degrees = made.degrees
    allowed = degrees[None, :] < degrees[:, None]  # [i, j]: output i may see input j
    jacobian = output_jacobian(made, torch.randn(5))
    assert jacobian.shape == (2, 5, 5)
    assert torch.all(jacobian[:, ~allowed] == 0)
    # with sequential hidden degrees and enough units every allowed connection exists
    assert torch.all(jacobian[:, allowed].abs() > 0)


def test_random_hidden_degrees_keep_the_autoregressive_property():
    torch.manual_seed(0)
    made = MADE(6, [8, 8, 8], hidden_mode="random", order="random", activation="tanh",
                generator=torch.Generator().manual_seed(3))
    allowed = made.degrees[None, :] < made.degrees[:, None]
    jacobian = output_jacobian(made, torch.randn(6))
    assert torch.all(jacobian[:, ~allowed] == 0)


def test_context_enters_every_output_that_sees_a_hidden_unit():
    torch.manual_seed(0)
    x = torch.randn(1, 3)
    real = MADE(3, [8], context_features=2, activation="tanh")
    labelled = MADE(3, [8], num_classes=4, activation="tanh")
    for change in (real(x, torch.tensor([[0.0, 1.0]])) - real(x, torch.tensor([[1.0, -1.0]])),
                   labelled(x, torch.tensor([0])) - labelled(x, torch.tensor([3]))):
        # as in gpapamak/maf the first variable of the order has no hidden unit below its degree: its Gaussian is a
        # learned constant; the others depend on the context
        assert torch.all(change[:, :, 0] == 0)
        assert torch.all(change[:, :, 1:].abs() > 0)


def test_a_single_feature_depends_on_nothing_but_the_context():
    made = MADE(1, [4])
    assert torch.all(made.hidden[0].mask == 0)
    out = made(torch.tensor([[1.0], [-3.0]]))
    assert torch.equal(out[0], out[1])


def test_degrees_follow_gpapamak_maf():
    assert input_degrees(4, "sequential").tolist() == [1, 2, 3, 4]
    # sequential hidden degrees cycle through 1..D-1 (create_degrees, mode='sequential')
    assert hidden_degrees(4, 7, torch.arange(1, 5), "sequential").tolist() == [1, 2, 3, 1, 2, 3, 1]
    random = hidden_degrees(5, 100, torch.tensor([3, 4, 2, 5, 1]), "random", torch.Generator().manual_seed(0))
    assert random.min() >= 1 and random.max() <= 4


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="permutation of 1..3"):
        input_degrees(3, [1, 1, 2])
    with pytest.raises(ValueError, match="input order"):
        input_degrees(3, "backwards")
    with pytest.raises(ValueError, match="hidden degree mode"):
        MADE(3, [4], hidden_mode="greedy")
    with pytest.raises(ValueError, match="activation"):
        MADE(3, [4], activation="gelu")
    with pytest.raises(ValueError, match="either context_features"):
        MADE(3, [4], context_features=2, num_classes=3)
    made = MADE(3, [4], num_classes=3)
    with pytest.raises(ValueError, match="conditional"):
        made(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        made(torch.zeros(2, 3), torch.tensor([0, 3]))
