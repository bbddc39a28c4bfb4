"""The invertible layers the architectures share.

Every layer is a :class:`nfkit_core.Transform`: ``forward(x, context) -> (z, log_det)`` in the normalizing direction and
``inverse(z, context, **options) -> (x, log_det)``. Stochastic layers (:class:`Split`, :class:`Augment`, the
dequantizers) draw their noise from :mod:`nfkit_core.noise`.
"""

from nfkit_core.layers.actnorm import ActNorm
from nfkit_core.layers.augment import Augment
from nfkit_core.layers.batchnorm import BatchNorm
from nfkit_core.layers.conv1x1 import InvertibleConv1x1
from nfkit_core.layers.coupling import AdditiveCoupling, AffineCoupling
from nfkit_core.layers.dequantization import UniformDequantization, VariationalDequantization
from nfkit_core.layers.elementwise import ElementwiseAffine, Logit, Sigmoid
from nfkit_core.layers.permutation import ChannelSwap, Permutation, RandomPermutation, Reverse
from nfkit_core.layers.split import Split
from nfkit_core.layers.squeeze import Squeeze, Unsqueeze

__all__ = ["ActNorm", "AdditiveCoupling", "AffineCoupling", "Augment", "BatchNorm", "ChannelSwap",
           "ElementwiseAffine", "InvertibleConv1x1", "Logit", "Permutation", "RandomPermutation", "Reverse",
           "Sigmoid", "Split", "Squeeze", "UniformDequantization", "Unsqueeze", "VariationalDequantization"]
