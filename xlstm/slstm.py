"""The NeurIPS sLSTM cell and layer."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..schemas.blocks import SLSTMLayerConfig
from ..schemas.kernels import KernelConfig
from .backend import SLSTMBackend
from .layers import CausalConv1d, LinearHeadwiseExpand
from .norms import MultiHeadLayerNorm
from .state import LayerState, SLSTMState


class SLSTMCell(nn.Module):
    """Head-wise recurrence over gate pre-activations (B, S, 4 * H) in gate order (i, f, z, o).

    recurrent_kernel (NH, DH, 4, DH) and bias (NH, 4, DH) are NX-AI's external layouts.
    """

    def __init__(self, hidden: int, num_heads: int, kernels: KernelConfig):
        super().__init__()
        self.num_heads = num_heads
        dh = hidden // num_heads
        self.recurrent_kernel = nn.Parameter(torch.zeros(num_heads, dh, 4, dh))
        self.bias = nn.Parameter(torch.zeros(num_heads, 4, dh))
        self.backend = SLSTMBackend(kernels)

    def forward(self, gates: torch.Tensor, state: Optional[SLSTMState] = None):
        wx = gates.unflatten(-1, (4, self.num_heads, -1))
        return self.backend(wx, self.recurrent_kernel, self.bias, state)


class SLSTMLayer(nn.Module):
    """conv + SiLU feeds the i and f gates, the raw input feeds z and o; group norm over heads."""

    def __init__(self, config: SLSTMLayerConfig, embedding_dim: int, kernels: KernelConfig, dropout: float = 0.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        D, NH = embedding_dim, config.num_heads
        self.conv1d = CausalConv1d(D, config.conv1d_kernel_size) if config.conv1d_kernel_size > 0 else None
        # NX-AI names: module `fgate` feeds the input-gate slot and `igate` the forget-gate slot (trap 16).
        self.fgate = LinearHeadwiseExpand(D, NH)
        self.igate = LinearHeadwiseExpand(D, NH)
        self.zgate = LinearHeadwiseExpand(D, NH)
        self.ogate = LinearHeadwiseExpand(D, NH)
        self.slstm_cell = SLSTMCell(D, NH, kernels)
        self.dropout = nn.Dropout(dropout)
        self.group_norm = MultiHeadLayerNorm(D, eps=norm_eps, weight=config.group_norm_weight)

    def forward(self, x: torch.Tensor, state: Optional[LayerState] = None):
        conv = None
        x_c = x
        if self.conv1d is not None:
            x_c, conv = self.conv1d(x, None if state is None else state.conv)
            x_c = F.silu(x_c)
        gates = torch.cat([self.fgate(x_c), self.igate(x_c), self.zgate(x), self.ogate(x)], -1)
        y, cell = self.slstm_cell(gates, None if state is None else state.cell)
        return self.group_norm(self.dropout(y)), LayerState(cell, conv)
