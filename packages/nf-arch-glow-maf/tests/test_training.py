"""Short training runs on real data that ships with scikit-learn: the held-out likelihood must improve a lot.

Numbers observed when these thresholds were set (torch 2.14 CPU, one thread): Glow on digits 4.40 -> 2.63 bits/dim
in 300 steps; MAF on breast cancer 45.7 -> 6.8 nats in 300 steps (a full-covariance Gaussian fit reaches 5.7).
"""

import math

import torch
from sklearn.datasets import load_breast_cancer

from nfkit_core import noise
from nfkit_core.data.digits import DigitsConfig, load_digits
from nfkit_core.data.preprocess import uniform_dequantize
from nfkit_core.flow import bits_per_dim
from nfkit_core.plugins import DataInfo
from nfkit_glow_maf import GlowConfig, MAFConfig, build_glow, build_maf
from nfkit_glow_maf.glow import PRESETS as GLOW_PRESETS
from nfkit_glow_maf.maf import PRESETS as MAF_PRESETS


def train(flow, sample_batch, steps: int, lr: float) -> None:
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    flow.train()
    for _ in range(steps):
        loss = -flow.log_prob(sample_batch()).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_glow_learns_the_digits():
    torch.manual_seed(0)
    train_set, test_set = (load_digits(DigitsConfig(), split) for split in ("train", "test"))
    info = train_set.info
    images = train_set.data.float()
    with noise.use(torch.Generator().manual_seed(1)):
        held_out = uniform_dequantize(test_set.data.float(), info.num_bins)
    log_bin_width = math.log(2 / info.num_bins)

    flow = build_glow(GlowConfig(**GLOW_PRESETS["digits-tiny"]), DataInfo(info.shape, num_bins=info.num_bins))

    def held_out_bits_per_dim() -> float:
        flow.eval()
        with torch.no_grad():
            return bits_per_dim(flow.log_prob(held_out), flow.num_dims, log_bin_width).mean().item()

    def batch():
        return uniform_dequantize(images[torch.randint(len(images), (64,))], info.num_bins)

    flow.train()
    with torch.no_grad():
        flow.log_prob(batch())  # ActNorm's data-dependent initialisation
    before = held_out_bits_per_dim()
    train(flow, batch, steps=300, lr=1e-3)
    after = held_out_bits_per_dim()
    assert before > 4.0, before  # about log2(17) = 4.09: no better than uniform over the 17 levels
    assert after < 3.0, (before, after)


def test_maf_learns_a_real_tabular_density():
    torch.manual_seed(0)
    data = torch.log1p(torch.as_tensor(load_breast_cancer().data, dtype=torch.float32))  # 569 x 30, heavy tails
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    train_part, test_part = data[order[:455]], data[order[455:]]
    mean, std = train_part.mean(0), train_part.std(0)
    train_part, test_part = (train_part - mean) / std, (test_part - mean) / std

    flow = build_maf(MAFConfig(**MAF_PRESETS["tabular-small"]), DataInfo((30,)))

    def held_out_nll() -> float:
        flow.eval()
        with torch.no_grad():
            return -flow.log_prob(test_part).mean().item()

    before = held_out_nll()
    train(flow, lambda: train_part[torch.randint(len(train_part), (100,))], steps=300, lr=1e-3)
    after = held_out_nll()
    independent_gaussians = 0.5 * 30 * math.log(2 * math.pi * math.e)  # 42.6 nats: standardised, no correlations
    assert before > independent_gaussians, before
    assert after < 10.0, (before, after)
    # Finite input far outside the training data gets a very low density, never NaN: without the bound on the
    # log-precision, rows at 15 standard deviations overflowed to inf and then NaN (maf.LOG_PRECISION_BOUND).
    flow.eval()
    with torch.no_grad():
        for sigma in (15.0, 100.0, 1e4):
            outliers = torch.cat([sigma * torch.eye(30), -sigma * torch.eye(30), torch.full((1, 30), sigma)])
            log_prob = flow.log_prob(outliers)
            assert torch.isfinite(log_prob).all(), (sigma, log_prob)
            assert log_prob.max() < flow.log_prob(test_part).min(), sigma
