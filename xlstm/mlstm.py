"""The NeurIPS mLSTM cell and layer (pre up-projection block of the xLSTM paper)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..schemas.blocks import MLSTMLayerConfig
from ..schemas.kernels import KernelConfig
from .backend import MLSTMBackend
from .layers import CausalConv1d, LinearHeadwiseExpand
from .norms import MultiHeadLayerNorm
from .state import LayerState, MLSTMState


class MLSTMCell(nn.Module):
    """Gates from cat(q, k, v), the mLSTM recurrence per head, then a per-head group norm."""

    def __init__(self, inner_dim: int, num_heads: int, kernels: KernelConfig, norm_eps: float = 1e-5,
                 norm_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.igate = nn.Linear(3 * inner_dim, num_heads)
        self.fgate = nn.Linear(3 * inner_dim, num_heads)
        self.outnorm = MultiHeadLayerNorm(inner_dim, eps=norm_eps, bias=norm_bias)
        self.backend = MLSTMBackend(kernels)

    def forward(self, q, k, v, state: Optional[MLSTMState] = None):
        gates_in = torch.cat([q, k, v], -1)
        i = self.igate(gates_in).transpose(1, 2)  # (B, NH, S)
        f = self.fgate(gates_in).transpose(1, 2)
        heads = lambda t: t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # noqa: E731
        h, state = self.backend(heads(q), heads(k), heads(v), i, f, state)
        return self.outnorm(h.transpose(1, 2)), state


class MLSTMLayer(nn.Module):
    """proj_up -> (conv + SiLU -> q, k; pre-conv -> v) -> cell -> + skip -> * SiLU(z) -> proj_down."""

    def __init__(self, config: MLSTMLayerConfig, embedding_dim: int, kernels: KernelConfig, bias: bool = False,
                 dropout: float = 0.0, norm_eps: float = 1e-5):
        super().__init__()
        inner = config.proj_up_dim(embedding_dim)
        blocks = inner // config.qkv_proj_blocksize
        self.proj_up = nn.Linear(embedding_dim, 2 * inner, bias=bias)
        self.conv1d = CausalConv1d(inner, config.conv1d_kernel_size)
        self.q_proj = LinearHeadwiseExpand(inner, blocks, bias=bias)
        self.k_proj = LinearHeadwiseExpand(inner, blocks, bias=bias)
        self.v_proj = LinearHeadwiseExpand(inner, blocks, bias=bias)
        self.mlstm_cell = MLSTMCell(inner, config.num_heads, kernels, norm_eps)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, embedding_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: Optional[LayerState] = None):
        x_m, z = self.proj_up(x).chunk(2, -1)
        x_c, conv = self.conv1d(x_m, None if state is None else state.conv)
        x_c = F.silu(x_c)
        h, cell = self.mlstm_cell(self.q_proj(x_c), self.k_proj(x_c), self.v_proj(x_m),
                                  None if state is None else state.cell)
        y = self.proj_down((h + self.learnable_skip * x_c) * F.silu(z))
        return self.dropout(y), LayerState(cell, conv)
