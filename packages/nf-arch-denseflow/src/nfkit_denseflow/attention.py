"""Nyström self-attention over the pixels of a feature map (Xiong et al. 2021, "Nyströmformer").

Softmax attention over ``n`` tokens costs ``O(n^2)``. Nyström attention approximates the ``n x n`` attention matrix
through ``m`` landmarks (segment means of the queries and keys), eq. (14) of the Nyströmformer paper::

    softmax(Q K^T) V  ~  softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V

at ``O(n m)`` cost. DenseFlow (Grcić et al. 2021, section 3.3) runs it beside the dense block of every intra-unit
coupling network and adds a skip connection from the values.

Two forms are implemented:

``"paper"`` (the default for new models)
    tokens are the pixels (``(B, 3E, H, W) -> (B, H*W, 3E)``), scores are scaled by ``1/sqrt(E)``, every softmax
    normalises over the keys, landmarks are plain segment means. When a feature map has no more pixels than
    landmarks, exact softmax attention is used (the Nyström formula is then exact anyway).
``"official"``
    the arithmetic of the official implementation (matejgrcic/DenseFlow, ``NystromAttention``), which pretrained
    weights depend on: the ``(B, 3E, H, W)`` projection is *reshaped* (not transposed) to ``(B, H*W, 3E)``, so a
    "token" is a run of ``3E`` consecutive values of the channel-major memory layout and the output is reshaped back
    the same way; no ``1/sqrt(E)`` scaling, instead the landmarks are divided by ``sqrt(H*W)``; and every softmax
    normalises over dimension ``-2`` (the queries or landmarks), not over the keys.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nfkit_core.attention import sdpa_attention

__all__ = ["ATTENTION_MODES", "NystromAttention", "iterative_pinv"]

ATTENTION_MODES = ("paper", "official")


def iterative_pinv(matrix: Tensor, num_iterations: int = 6) -> Tensor:
    """Moore-Penrose pseudo-inverse of a batch of square matrices by the iteration of Razavi et al. (2014).

    ``V <- V (13 I - K V (15 I - K V (7 I - K V))) / 4`` from ``V0 = K^T / (||K||_1 ||K||_inf)`` (Nyströmformer,
    eq. 16), with the norms of each matrix of the batch. Under autocast or for half-precision input the iteration
    runs in float32 (it does not converge in bfloat16); the result has the dtype of ``matrix``.

    Args:
        matrix: a batch of square matrices ``(..., m, m)``.
        num_iterations: the number of iterations.

    Returns:
        the pseudo-inverses, the shape and dtype of ``matrix``.
    """
    if matrix.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(matrix.device.type):
        with torch.autocast(device_type=matrix.device.type, enabled=False):
            return _pinv_iterations(matrix.float(), num_iterations).to(matrix.dtype)
    return _pinv_iterations(matrix, num_iterations)


def _pinv_iterations(matrix: Tensor, num_iterations: int) -> Tensor:
    eye = torch.eye(matrix.shape[-1], device=matrix.device, dtype=matrix.dtype)
    magnitude = matrix.abs()
    max_column_sum = magnitude.sum(dim=-2, keepdim=True).amax(dim=-1, keepdim=True)
    max_row_sum = magnitude.sum(dim=-1, keepdim=True).amax(dim=-2, keepdim=True)
    inverse = matrix.transpose(-1, -2) / (max_column_sum * max_row_sum)
    for _ in range(num_iterations):
        product = matrix @ inverse
        inverse = 0.25 * inverse @ (13 * eye - product @ (15 * eye - product @ (7 * eye - product)))
    return inverse


class NystromAttention(nn.Module):
    """Single-head Nyström self-attention on a ``(B, C, H, W)`` feature map, plus a skip connection from the values.

    Args:
        channels: input and output channels ``C``.
        embed_dim: width ``E`` of the queries, keys and values.
        num_landmarks: ``m``; ``H * W`` must be a multiple of it (segment means).
        mode: ``"paper"`` or ``"official"`` (see the module docstring).
        pinv_iterations: iterations of :func:`iterative_pinv` (6, as the official code and Nyströmformer).
    """

    def __init__(self, channels: int, embed_dim: int, num_landmarks: int = 4, mode: str = "paper",
                 pinv_iterations: int = 6) -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
        if embed_dim < 1 or num_landmarks < 1:
            raise ValueError(f"embed_dim and num_landmarks must be positive, got {embed_dim} and {num_landmarks}")
        self.embed_dim = embed_dim
        self.num_landmarks = num_landmarks
        self.mode = mode
        self.pinv_iterations = pinv_iterations
        self.qkv = nn.Conv2d(channels, 3 * embed_dim, kernel_size=1)
        self.out = nn.Conv2d(embed_dim, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        tokens = height * width
        if self.mode == "official":
            if tokens % self.num_landmarks:
                raise ValueError(f"official Nyström attention needs H*W divisible by {self.num_landmarks} "
                                 f"landmarks, got a {height}x{width} feature map")
            q, k, v = self.qkv(x).reshape(batch, tokens, 3 * self.embed_dim).chunk(3, dim=-1)
            out = self._official(q, k, v)
            return self.out(out.reshape(batch, self.embed_dim, height, width))
        q, k, v = self.qkv(x).flatten(2).transpose(1, 2).chunk(3, dim=-1)
        out = self._paper(q, k, v)
        return self.out(out.transpose(1, 2).reshape(batch, self.embed_dim, height, width))

    def _landmarks(self, t: Tensor) -> Tensor:
        batch, tokens, dim = t.shape
        return t.reshape(batch, self.num_landmarks, tokens // self.num_landmarks, dim).mean(dim=-2)

    def _paper(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        tokens = q.shape[1]
        if tokens <= self.num_landmarks:
            return sdpa_attention(q[:, None], k[:, None], v[:, None])[:, 0] + v
        if tokens % self.num_landmarks:
            raise ValueError(f"Nyström attention with {self.num_landmarks} landmarks needs a number of pixels "
                             f"divisible by it, got {tokens}")
        q = q * self.embed_dim ** -0.25
        k = k * self.embed_dim ** -0.25
        q_landmarks, k_landmarks = self._landmarks(q), self._landmarks(k)
        kernel_1 = (q @ k_landmarks.transpose(-1, -2)).softmax(dim=-1)
        kernel_2 = (q_landmarks @ k_landmarks.transpose(-1, -2)).softmax(dim=-1)
        kernel_3 = (q_landmarks @ k.transpose(-1, -2)).softmax(dim=-1)
        return kernel_1 @ (iterative_pinv(kernel_2, self.pinv_iterations) @ (kernel_3 @ v)) + v

    def _official(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        scale = math.sqrt(q.shape[1])
        q_landmarks, k_landmarks = self._landmarks(q) / scale, self._landmarks(k) / scale
        kernel_1 = (q @ k_landmarks.transpose(-1, -2)).softmax(dim=-2)
        kernel_2 = (q_landmarks @ k_landmarks.transpose(-1, -2)).softmax(dim=-2)
        kernel_3 = (q_landmarks @ k.transpose(-1, -2)).softmax(dim=-2)
        return (kernel_1 @ iterative_pinv(kernel_2, self.pinv_iterations)) @ (kernel_3 @ v) + v
