"""The invertible layers the architectures share.

Every layer is a :class:`nf_core.Transform`: ``forward(x, context) -> (z, log_det)`` in the normalizing direction and
``inverse(z, context) -> (x, log_det)``. Stochastic layers (:class:`Split`, :class:`Augment`, the dequantizers) draw
their noise from :mod:`nf_core.noise`.
"""

from nf_core.layers.actnorm import ActNorm
from nf_core.layers.augment import Augment
from nf_core.layers.batchnorm import BatchNorm
from nf_core.layers.conv1x1 import InvertibleConv1x1
from nf_core.layers.coupling import AdditiveCoupling, AffineCoupling
from nf_core.layers.dequantization import UniformDequantization, VariationalDequantization
from nf_core.layers.elementwise import ElementwiseAffine, Logit, Sigmoid
from nf_core.layers.permutation import ChannelSwap, Permutation, RandomPermutation, Reverse
from nf_core.layers.split import Split
from nf_core.layers.squeeze import Squeeze, Unsqueeze

__all__ = ["ActNorm", "AdditiveCoupling", "AffineCoupling", "Augment", "BatchNorm", "ChannelSwap",
           "ElementwiseAffine", "InvertibleConv1x1", "Logit", "Permutation", "RandomPermutation", "Reverse",
           "Sigmoid", "Split", "Squeeze", "UniformDequantization", "Unsqueeze", "VariationalDequantization"]
