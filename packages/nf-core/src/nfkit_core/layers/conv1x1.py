"""Invertible 1x1 convolution (Kingma & Dhariwal 2018, "Glow", section 3.2)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core.layers.shapes import positions
from nfkit_core.transform import Transform
from nfkit_core.validation import check_channels

__all__ = ["InvertibleConv1x1"]


class InvertibleConv1x1(Transform):
    """``z = W x`` at every position: a learned linear mixing of the channels, initialised to a random rotation.

    With ``lu=False`` the parameter is the matrix ``weight`` itself and the log-determinant costs an ``O(C^3)``
    ``slogdet``. With ``lu=True`` (Glow's LU decomposition, eq. 10) ``W = P L (U + diag(sign * exp(log_diag)))`` with
    a fixed permutation ``P`` and signs, a unit lower-triangular ``L``, a strictly upper-triangular ``U`` and
    ``log_diag``, so that ``log |det W| = sum(log_diag)``. Only the free entries are parameters: ``lower`` holds the
    ``C (C - 1) / 2`` entries below the diagonal of ``L`` and ``upper`` those above the diagonal of ``U``, row by row
    (``torch.tril_indices`` / ``torch.triu_indices`` order), so that both parametrisations have ``C^2`` parameters.

    Works on vectors ``(B, C)`` and on ``(B, C, *spatial)``. The mixing runs in the dtype of its input even under
    autocast: it is on the data path, where rounding to bfloat16 would perturb the latent and the likelihood at every
    layer and make the inverse inexact (the networks of the couplings are where autocast pays off).

    Args:
        num_channels: the number of channels ``C``.
        lu: parametrise ``W`` by its LU decomposition (Glow's "LU-decomposed" variant).
    """

    def __init__(self, num_channels: int, lu: bool = True) -> None:
        super().__init__()
        self.num_channels = int(num_channels)
        self.lu = bool(lu)
        self._cached_parameters: list[Tensor] = []
        self._cache: dict[bool, tuple[Tensor, Tensor]] = {}
        # Drawn and decomposed on the CPU, then moved: the same start on every device, and no slow linear algebra
        # where the model is only being counted (on the meta device a QR or LU first loads PyTorch's compiler stack).
        device = torch.get_default_device()
        rotation, _ = torch.linalg.qr(torch.randn(self.num_channels, self.num_channels, device="cpu"))
        if not self.lu:
            self.weight = nn.Parameter(rotation.to(device))
            return
        permutation, lower, upper = torch.linalg.lu(rotation)
        diag = upper.diagonal()
        lower_indices = torch.tril_indices(self.num_channels, self.num_channels, -1, device="cpu")
        upper_indices = torch.triu_indices(self.num_channels, self.num_channels, 1, device="cpu")
        self.register_buffer("permutation", permutation.to(device))
        self.register_buffer("sign_diag", diag.sign().to(device))
        self.register_buffer("lower_indices", lower_indices.to(device), persistent=False)
        self.register_buffer("upper_indices", upper_indices.to(device), persistent=False)
        self.lower = nn.Parameter(lower[tuple(lower_indices)].to(device))
        self.upper = nn.Parameter(upper[tuple(upper_indices)].to(device))
        self.log_diag = nn.Parameter(diag.abs().log().to(device))

    def matrix(self) -> Tensor:
        """The ``C x C`` matrix ``W``."""
        if not self.lu:
            return self.weight
        eye = torch.eye(self.num_channels, device=self.lower.device, dtype=self.lower.dtype)
        lower = eye.index_put(tuple(self.lower_indices), self.lower)
        upper = torch.diag(self.sign_diag * self.log_diag.exp()).index_put(tuple(self.upper_indices), self.upper)
        return self.permutation @ lower @ upper

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Also load checkpoints that stored ``lower`` and ``upper`` as full masked ``C x C`` matrices."""
        if self.lu and prefix + "lower_mask" in state_dict:
            del state_dict[prefix + "lower_mask"]
            for name, indices in (("lower", self.lower_indices), ("upper", self.upper_indices)):
                state_dict[prefix + name] = state_dict[prefix + name][tuple(indices)]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def log_abs_det(self) -> Tensor:
        """``log |det W|``."""
        return self.log_diag.sum() if self.lu else torch.linalg.slogdet(self.weight).logabsdet

    def _mixing(self, inverse: bool) -> tuple[Tensor, Tensor]:
        """``(W, log |det W|)``, or ``(W^-1, log |det W|)``.

        On the CPU and without autograd (sampling, evaluation) both are kept and reused while the parameters hold the
        same values: building and inverting the large ``C x C`` matrices of a deep flow's last levels at every call
        is a sizeable part of its sampling time (see ``benchmarks/results``). The parameters are compared by value
        (``O(C^2)``), since not every in-place update is visible otherwise (the fused AdamW kernel leaves tensors'
        version counters alone); on a GPU the comparison would wait for the device, and the matrices are recomputed.
        """
        parameters = [p.detach() for p in self.parameters()]
        if torch.is_grad_enabled() or parameters[0].device.type != "cpu":
            matrix = self.matrix()
            return (torch.linalg.inv(matrix) if inverse else matrix), self.log_abs_det()
        unchanged = len(self._cached_parameters) == len(parameters) and all(
            cached.dtype == current.dtype and torch.equal(cached, current)
            for cached, current in zip(self._cached_parameters, parameters))
        if not unchanged:
            self._cached_parameters, self._cache = [p.clone() for p in parameters], {}
        if inverse not in self._cache:
            matrix = self.matrix()
            self._cache[inverse] = (torch.linalg.inv(matrix) if inverse else matrix), self.log_abs_det()
        return self._cache[inverse]

    def _mix(self, matrix: Tensor, x: Tensor) -> Tensor:
        check_channels("InvertibleConv1x1", x, self.num_channels)
        return torch.einsum("ij,bj...->bi...", matrix.to(x.dtype), x)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.autocast(x.device.type, enabled=False):
            matrix, log_abs_det = self._mixing(inverse=False)
            return self._mix(matrix, x), (log_abs_det * positions(x)).repeat(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        with torch.autocast(z.device.type, enabled=False):
            inverse_matrix, log_abs_det = self._mixing(inverse=True)
            return self._mix(inverse_matrix, z), -(log_abs_det * positions(z)).repeat(z.shape[0])
