"""Building blocks shared by the NeurIPS layers: causal convolution, block-diagonal projection, gated FFN."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class Embedding(nn.Embedding):
    """nn.Embedding that skips its random init on the meta device: torch's meta `normal_` imports
    torch._dynamo (over a second), which would make a meta build of a 7B model slow."""

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class CausalConv1d(nn.Module):
    """Depthwise causal convolution over time that carries its last K-1 inputs as state.

    Parameter layout matches NX-AI (`conv.weight` (F, 1, K), `conv.bias`); the last tap multiplies the
    current input. Running a sequence in pieces with the returned history equals running it whole.
    """

    def __init__(self, features: int, kernel_size: int, bias: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(features, features, kernel_size, groups=features, bias=bias)

    def forward(self, x: torch.Tensor, history: Optional[torch.Tensor] = None):
        B, S, F_ = x.shape
        K = self.kernel_size
        if history is None:
            history = x.new_zeros(B, K - 1, F_)
        padded = torch.cat([history.to(x.dtype), x], 1)
        if torch.compiler.is_compiling():  # K shifted products, which Inductor fuses with the pointwise work
            # around them (the depthwise conv kernel is its own slow launch: ~10% of a compiled 125M step)
            w = self.conv.weight[:, 0]
            y = sum(padded[:, k:k + S] * w[:, k] for k in range(K))
            y = (y if self.conv.bias is None else y + self.conv.bias).to(x.dtype)
        else:
            y = F.conv1d(padded.transpose(1, 2), self.conv.weight, self.conv.bias, groups=F_).transpose(1, 2)
        return y, padded[:, padded.shape[1] - (K - 1):]


class LinearHeadwiseExpand(nn.Module):
    """Block-diagonal linear map: the input is split into `num_heads` blocks, each with its own matrix.

    weight (num_heads, out_per_head, in_per_head), as NX-AI's LinearHeadwiseExpand.
    """

    def __init__(self, features: int, num_heads: int, bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        per = features // num_heads
        self.weight = nn.Parameter(torch.empty(num_heads, per, per))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None
        nn.init.normal_(self.weight, std=(2 / 5 / per) ** 0.5)

    def dense_weight(self) -> torch.Tensor:
        """The same map as one (features, features) block-diagonal matrix (zeros off the blocks)."""
        features = self.weight.shape[0] * self.weight.shape[1]
        return torch.diag_embed(self.weight.permute(1, 2, 0)).permute(2, 0, 3, 1).reshape(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:  # tensor cores run one dense product ~3x faster than many tiny ones (benchmarks/results/headwise-*)
            y = F.linear(x, self.dense_weight())
        else:  # elsewhere the block products do 1/num_heads of the dense work
            y = torch.einsum("...hd,hod->...ho", x.unflatten(-1, (self.num_heads, -1)), self.weight).flatten(-2)
        return y if self.bias is None else y + self.bias


ACTIVATIONS = {
    "gelu": F.gelu,
    "relu": F.relu,
    "relu^2": lambda x: F.relu(x).square(),
    "sigmoid": torch.sigmoid,
    "swish": F.silu,
    "selu": F.selu,
}


class GatedFeedForward(nn.Module):
    """NeurIPS gated FFN: proj_up to 2F, split (gate, up), proj_down(act(gate) * up)."""

    def __init__(self, dim: int, hidden: int, act_fn: str, bias: bool, dropout: float):
        super().__init__()
        self.act = ACTIVATIONS[act_fn]
        self.proj_up = nn.Linear(dim, 2 * hidden, bias=bias)
        self.proj_down = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.proj_up(x).chunk(2, -1)
        return self.dropout(self.proj_down(self.act(gate) * up))
