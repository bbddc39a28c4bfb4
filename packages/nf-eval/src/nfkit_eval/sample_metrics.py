"""Sample-quality metrics computed from features, by torch-fidelity (never re-implemented here).

* Fréchet distance (Heusel et al. 2017): ``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2))`` of the Gaussians
  fitted to generated and reference features (``torch_fidelity.metric_fid``);
* kernel distance (KID, Bińkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
  ``(x.y / d + 1)^3``, averaged over random subsets of equal size (``torch_fidelity.metric_kid``);
* precision and recall (Kynkäänniemi et al. 2019) with ``k = 3`` nearest neighbours (``torch_fidelity.metric_prc``).

For vector (tabular) data: the two-sample Kolmogorov-Smirnov statistic of every feature (``scipy.stats.ks_2samp``),
and the ROC-AUC of a classifier trained to tell real from generated rows, under 5-fold cross-validation
(scikit-learn; 0.5 means it cannot tell them apart).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from nfkit_core.errors import ConfigError

__all__ = ["frechet_distance", "kernel_distance", "precision_recall", "KIDSubsetError", "ks_statistics",
           "real_vs_generated_auc"]


class KIDSubsetError(ConfigError):
    """Fewer samples than KID's subset size."""


def frechet_distance(generated: Tensor, reference: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets ``(n, d)`` (float64).

    Args:
        generated: features of the generated samples, ``(n, d)``.
        reference: features of the reference data, ``(m, d)``.
    """
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    stats_g = fid_features_to_statistics(generated.double().cpu())
    stats_r = fid_features_to_statistics(reference.double().cpu())
    return fid_statistics_to_metric(stats_g, stats_r, verbose=False)[KEY_METRIC_FID]


def kernel_distance(generated: Tensor, reference: Tensor, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation over ``subsets`` random subsets of ``subset_size`` from each set.

    Args:
        generated: features of the generated samples, ``(n, d)``.
        reference: features of the reference data, ``(m, d)``.
        subsets: the number of random subsets.
        subset_size: the rows of each subset, from each set.
        seed: seeds the subsets.

    Returns:
        ``(mean, standard deviation)`` of the kernel distance over the subsets.

    Raises:
        KIDSubsetError: a set has fewer than ``subset_size`` rows.
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    smallest = min(len(generated), len(reference))
    if smallest < subset_size:
        raise KIDSubsetError(f"KID's subset size is {subset_size}, but there are only {len(generated)} generated "
                             f"and {len(reference)} reference samples; lower --kid-subset-size to at most {smallest} "
                             f"or draw more samples with --num-samples")
    result = kid_features_to_metric(generated.double().cpu(), reference.double().cpu(), kid_subsets=subsets,
                                    kid_subset_size=subset_size, rng_seed=seed, verbose=False)
    return result[KEY_METRIC_KID_MEAN], result[KEY_METRIC_KID_STD]


def precision_recall(generated: Tensor, reference: Tensor, neighborhood: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s precision (share of generated samples inside the reference manifold) and recall (share of
    reference samples inside the generated manifold), each manifold the union of balls reaching the k-th neighbour.

    Args:
        generated: features of the generated samples, ``(n, d)``.
        reference: features of the reference data, ``(m, d)``.
        neighborhood: ``k``, the neighbour whose distance is each ball's radius.

    Returns:
        ``(precision, recall)``, each in ``[0, 1]``.
    """
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    result = prc_features_to_metric(generated.double().cpu(), reference.double().cpu(), prc_neighborhood=neighborhood,
                                    prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    return result[KEY_METRIC_PRECISION], result[KEY_METRIC_RECALL]


def ks_statistics(generated: Tensor, reference: Tensor) -> np.ndarray:
    """The two-sample Kolmogorov-Smirnov statistic of every feature (column) of ``(n, d)`` data.

    Args:
        generated: features of the generated samples, ``(n, d)``.
        reference: features of the reference data, ``(m, d)``.

    Returns:
        the statistic of each feature, shape ``(d,)``.
    """
    from scipy.stats import ks_2samp

    g = generated.double().cpu().reshape(len(generated), -1).numpy()
    r = reference.double().cpu().reshape(len(reference), -1).numpy()
    return np.array([ks_2samp(g[:, j], r[:, j]).statistic for j in range(g.shape[1])])


def real_vs_generated_auc(generated: Tensor, reference: Tensor, seed: int = 0, folds: int = 5) -> dict[str, Any]:
    """ROC-AUC of a gradient-boosted classifier telling reference (1) from generated (0) rows, from out-of-fold
    probabilities of a stratified ``folds``-fold cross-validation.

    Args:
        generated: features of the generated samples, ``(n, d)``.
        reference: features of the reference data, ``(m, d)``.
        seed: seeds the folds and the classifier.
        folds: the number of cross-validation folds.

    Returns:
        ``{"auc": ..., "protocol": {...}}``, the ROC-AUC (0.5 for indistinguishable sets) and how it was computed.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    g = np.nan_to_num(generated.double().cpu().reshape(len(generated), -1).numpy(), posinf=1e6, neginf=-1e6)
    r = reference.double().cpu().reshape(len(reference), -1).numpy()
    x = np.concatenate([r, g])
    y = np.concatenate([np.ones(len(r)), np.zeros(len(g))])
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(HistGradientBoostingClassifier(random_state=seed), x, y, cv=splitter,
                                      method="predict_proba")[:, 1]
    return {"auc": float(roc_auc_score(y, probabilities)),
            "protocol": {"classifier": "sklearn HistGradientBoostingClassifier (defaults)", "folds": folds,
                         "seed": seed, "real": len(r), "generated": len(g)}}
