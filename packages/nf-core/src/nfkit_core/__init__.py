"""nfkit-core: the contract every nf flow follows, the layers they share, and the machinery around them.

The contract is two protocols: :class:`Bijector` (every layer; :class:`Transform` is its base class) and :class:`Flow`
(every flow; :class:`NormalizingFlow` implements it). This package's own namespace is the contract (flows, transforms,
priors, layers, noise, validation); importing it imports nothing of the machinery (plugins, data, checkpoints,
trainer, command line), which lives in submodules: :mod:`nfkit_core.checkpoint`, :mod:`nfkit_core.plugins`,
:mod:`nfkit_core.data`, :mod:`nfkit_core.train`, :mod:`nfkit_core.cli`. See :mod:`nfkit_core.transform` for the
conventions (direction, log-determinant, stochastic layers, context, sampling options).
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from nfkit_core import layers, noise, validation
from nfkit_core.flow import Flow, LogLikelihood, NormalizingFlow, bits_per_dim, importance_weighted_log_prob
from nfkit_core.priors import ClassConditionalGaussian, DiagonalGaussian, GaussianPrior, Prior, StandardNormal
from nfkit_core.transform import Bijector, Sequential, Transform, sum_except_batch


def version() -> str:
    """The installed version of nfkit-core."""
    try:
        return _distribution_version("nfkit-core")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = version()

__all__ = ["Bijector", "ClassConditionalGaussian", "DiagonalGaussian", "Flow", "GaussianPrior", "LogLikelihood",
           "NormalizingFlow", "Prior", "Sequential", "StandardNormal", "Transform", "bits_per_dim",
           "importance_weighted_log_prob", "layers", "noise", "sum_except_batch", "validation", "version"]
