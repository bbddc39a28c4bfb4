"""nfkit-eval's importance-weighted bound on DenseFlow (variational dequantization and cross-unit noise): at least the
single-sample bound, and tighter as K grows (DenseFlow's protocol, Grcić et al. 2021)."""

from __future__ import annotations

import torch

from nfkit_core.data import Preprocessing
from nfkit_core.data.digits import DigitsConfig
from nfkit_eval import EvalData
from nfkit_eval.likelihood import likelihood_measurements


def test_the_importance_weighted_bound_rises_with_k_on_denseflow(registry):
    spec = registry.architectures.get("denseflow")
    held_out = registry.load_dataset("digits", DigitsConfig(), "test")
    torch.manual_seed(0)
    flow = registry.build_flow("denseflow", spec.make_config("digits"), held_out.info).eval()
    data = EvalData("digits", DigitsConfig(), "test", held_out, held_out, Preprocessing("levels", 17), held_out.info)
    single, *_ = likelihood_measurements(flow, data, max_examples=24, seed=0)
    assert single.protocol["likelihood"] == "stochastic bound"
    bounds = []
    for k in (1, 4, 16):
        (weighted,) = likelihood_measurements(flow, data, importance_samples=k, sample_batch_size=4, max_examples=24,
                                              seed=0, single=False)
        assert weighted.protocol["K"] == k
        bounds.append(weighted.value)
    # in bits/dim, lower is a higher (tighter) lower bound of log p(x)
    assert abs(bounds[0] - single.value) < 0.1  # K = 1 is the single-sample bound, under other draws
    assert single.value > bounds[1] > bounds[2], (single.value, bounds)
    assert bounds[0] > bounds[1] > bounds[2], bounds
