"""Norms of both families.

NeurIPS (NX-AI xlstm): weight stored as an offset (scale = 1 + w), computed in the input dtype, eps 1e-5.
Large (7B): reductions in float32, cast back to the input dtype, then the weight multiplies (trap 10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """NeurIPS LayerNorm over the last dim with an offset weight (zero init = identity scale)."""

    def __init__(self, dim: int, eps: float = 1e-5, weight: bool = True, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim)) if weight else None
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = None if self.weight is None else 1.0 + self.weight
        return F.layer_norm(x, x.shape[-1:], scale, self.bias, self.eps)


class MultiHeadLayerNorm(LayerNorm):
    """NeurIPS group norm with one group per head: normalise each head of (..., NH, DH), then an
    offset affine over all NH * DH channels; returns (..., NH * DH)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, x.shape[-1:], None, None, self.eps).flatten(-2)
        if self.weight is not None:
            y = y * (1.0 + self.weight)
        return y if self.bias is None else y + self.bias


class RMSNorm(nn.Module):
    """xLSTM Large RMSNorm over the last dim (weight init ones)."""

    def __init__(self, dim: int, eps: float = 1e-6, force_float32: bool = True, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.force_float32 = force_float32
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        y = self.normalise(x.float() if self.force_float32 else x).to(dtype) * self.weight
        return y if self.bias is None else y + self.bias


class HeadwiseLayerNorm(RMSNorm):
    """xLSTM Large per-head LayerNorm: takes (..., NH, DH), returns (..., NH * DH); weight over NH * DH."""

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], None, None, self.eps).flatten(-2)
