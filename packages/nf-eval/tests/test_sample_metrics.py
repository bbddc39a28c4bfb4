"""FD, KID and precision/recall agree with independent numpy/scipy computations on the same features (and with
torch-fidelity's own functions), to 1e-6; the tabular statistics agree with their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from nfkit_eval.sample_metrics import (
    KIDSubsetError,
    frechet_distance,
    kernel_distance,
    ks_statistics,
    precision_recall,
    real_vs_generated_auc,
)


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    generated = rng.normal(0.3, 1.2, size=(150, 6)) @ rng.normal(size=(6, 6))
    reference = rng.normal(0.0, 1.0, size=(130, 6)) @ rng.normal(size=(6, 6))
    return torch.from_numpy(generated), torch.from_numpy(reference)


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


def numpy_kid(a: np.ndarray, b: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3 (Bińkowski et al. 2018, eq. 4) over random subsets, drawn as
    torch-fidelity draws them (a RandomState, generated subset first)."""
    rng = np.random.RandomState(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        m = size
        value = ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                 - 2 * k_xy.mean())
        values.append(value)
    return float(np.mean(values)), float(np.std(values))


def numpy_precision_recall(generated: np.ndarray, reference: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019: a point is inside a set's manifold when it lies within the distance of some set
    member to that member's k-th nearest neighbour (the member itself excluded)."""
    def radii(points):
        distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(distances, axis=1)[:, k]

    def coverage(points, members):
        distances = np.linalg.norm(points[:, None] - members[None], axis=-1)
        return float((distances <= radii(members)[None]).any(axis=1).mean())

    return coverage(generated, reference), coverage(reference, generated)


def test_frechet_distance_equals_scipy_and_torch_fidelity(features):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    generated, reference = features
    ours = frechet_distance(generated, reference)
    assert ours == pytest.approx(scipy_frechet(generated.numpy(), reference.numpy()), abs=1e-6, rel=1e-9)
    library = fid_statistics_to_metric(fid_features_to_statistics(generated), fid_features_to_statistics(reference),
                                       False)["frechet_inception_distance"]
    assert abs(ours - library) < 1e-6
    assert ours > 1.0


def test_frechet_distance_of_a_set_with_itself_is_zero(features):
    generated, _ = features
    assert abs(frechet_distance(generated, generated)) < 1e-6


def test_kernel_distance_equals_numpy(features):
    generated, reference = features
    mean, sd = kernel_distance(generated, reference, subsets=7, subset_size=50, seed=3)
    expected_mean, expected_sd = numpy_kid(generated.numpy(), reference.numpy(), 7, 50, 3)
    assert abs(mean - expected_mean) < 1e-6 and abs(sd - expected_sd) < 1e-6


def test_kernel_distance_refuses_subsets_larger_than_the_sets(features):
    generated, reference = features
    with pytest.raises(KIDSubsetError, match="lower --kid-subset-size to at most 130"):
        kernel_distance(generated, reference, subset_size=1000)


def test_precision_recall_equal_numpy(features):
    generated, reference = features
    precision, recall = precision_recall(generated, reference, neighborhood=3)
    expected = numpy_precision_recall(generated.numpy(), reference.numpy(), 3)
    assert abs(precision - expected[0]) < 1e-6 and abs(recall - expected[1]) < 1e-6
    assert 0 < precision < 1 and 0 < recall < 1
    assert precision_recall(reference, reference) == (1.0, 1.0)


def test_ks_statistics_are_the_largest_gap_between_empirical_cdfs():
    generated = torch.tensor([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0], [3.0, 8.0]])
    reference = torch.tensor([[2.5, 5.0], [3.5, 6.0], [4.5, 7.0], [5.5, 8.0]])
    np.testing.assert_allclose(ks_statistics(generated, reference), [0.75, 0.0])


def test_real_vs_generated_auc_is_half_for_the_same_distribution_and_one_for_disjoint_ones():
    rng = np.random.default_rng(1)
    same = real_vs_generated_auc(torch.from_numpy(rng.normal(size=(300, 3))),
                                 torch.from_numpy(rng.normal(size=(300, 3))))
    apart = real_vs_generated_auc(torch.from_numpy(rng.normal(size=(300, 3))),
                                  torch.from_numpy(rng.normal(size=(300, 3)) + 10))
    assert 0.4 < same["auc"] < 0.6
    assert apart["auc"] > 0.99
