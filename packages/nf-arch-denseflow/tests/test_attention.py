"""Nyström attention: the paper form approximates softmax attention, the official form reproduces the official code."""

from __future__ import annotations

import math

import pytest
import torch

from nfkit_denseflow.attention import NystromAttention, iterative_pinv


def softmax_attention(q, k, v):
    return (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(dim=-1) @ v


def test_iterative_pinv_inverts_softmax_matrices():
    matrix = torch.randn(5, 4, 4, dtype=torch.float64).softmax(dim=-1)
    torch.testing.assert_close(iterative_pinv(matrix, num_iterations=20), torch.linalg.inv(matrix), rtol=1e-6,
                               atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inverse = iterative_pinv(matrix.float(), num_iterations=20)
    assert inverse.dtype == torch.float32
    torch.testing.assert_close(inverse.double(), torch.linalg.inv(matrix), rtol=1e-4, atol=1e-4)


def _tokens(attention, x):
    batch, _, height, width = x.shape
    return attention.qkv(x).flatten(2).transpose(1, 2).chunk(3, dim=-1)


def test_paper_form_is_exact_when_tokens_repeat_within_landmark_segments():
    """With queries and keys constant on each landmark segment, the Nyström formula equals softmax attention."""
    torch.manual_seed(0)
    attention = NystromAttention(6, 4, num_landmarks=4, pinv_iterations=30).double()
    segments = torch.randn(2, 6, 4, 1, dtype=torch.float64)  # 4 segments of 4 consecutive pixels of a 4x4 map
    x = segments.expand(2, 6, 4, 4).contiguous()
    q, k, v = _tokens(attention, x)
    expected = softmax_attention(q, k, v) + v
    expected = attention.out(expected.transpose(1, 2).reshape(2, 4, 4, 4))
    torch.testing.assert_close(attention(x), expected, rtol=1e-6, atol=1e-6)


def test_paper_form_uses_exact_attention_on_small_maps():
    torch.manual_seed(0)
    attention = NystromAttention(6, 4, num_landmarks=4)
    x = torch.randn(3, 6, 2, 2)
    q, k, v = _tokens(attention, x)
    expected = attention.out((softmax_attention(q, k, v) + v).transpose(1, 2).reshape(3, 4, 2, 2))
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-5)


def test_paper_form_approximates_softmax_attention_on_smooth_maps():
    torch.manual_seed(0)
    attention = NystromAttention(8, 8, num_landmarks=16).double()
    x = torch.nn.functional.interpolate(torch.randn(2, 8, 4, 4, dtype=torch.float64), size=(8, 8), mode="bilinear")
    q, k, v = _tokens(attention, x)
    approx = attention._paper(q, k, v)
    exact = softmax_attention(q, k, v) + v
    assert (approx - exact).abs().max() < 0.1 * exact.abs().max()


def test_official_form_reproduces_the_official_arithmetic():
    """A transcription of ``NystromAttention.forward`` of matejgrcic/DenseFlow (reshape, not transpose, to tokens)."""
    torch.manual_seed(0)
    attention = NystromAttention(8, 4, num_landmarks=4, mode="official")
    x = torch.randn(2, 8, 4, 4)
    n, _, h, w = x.shape
    q, k, v = attention.qkv(x).reshape(n, h * w, 12).chunk(3, dim=-1)
    ql = q.reshape(n, 4, 4, 4).mean(dim=-2) / 4.0
    kl = k.reshape(n, 4, 4, 4).mean(dim=-2) / 4.0
    k1 = (q @ kl.transpose(-1, -2)).softmax(dim=-2)
    k2 = (ql @ kl.transpose(-1, -2)).softmax(dim=-2)
    k3 = (ql @ k.transpose(-1, -2)).softmax(dim=-2)
    expected = attention.out(((k1 @ iterative_pinv(k2)) @ (k3 @ v) + v).reshape(n, -1, h, w))
    torch.testing.assert_close(attention(x), expected)
    paper = NystromAttention(8, 4, num_landmarks=4, mode="paper")
    paper.load_state_dict(attention.state_dict())
    assert (paper(x) - attention(x)).abs().max() > 1e-3


def test_bad_options_and_sizes_are_reported():
    with pytest.raises(ValueError, match="attention mode"):
        NystromAttention(8, 4, mode="fast")
    with pytest.raises(ValueError, match="positive"):
        NystromAttention(8, 0)
    with pytest.raises(ValueError, match="divisible"):
        NystromAttention(8, 4, num_landmarks=4)(torch.randn(1, 8, 3, 3))
    with pytest.raises(ValueError, match="divisible by 4"):
        NystromAttention(8, 4, num_landmarks=4, mode="official")(torch.randn(1, 8, 1, 3))
