"""The TiRex forecaster (NX-AI TiRex): sLSTM blocks over patches of a standardised series, quantiles out.

Module names follow TiRex's checkpoints (`input_patch_embedding`, `blocks.{i}.slstm_layer`, `out_norm`,
`output_patch_embedding`), so its state_dict maps onto ours by renaming only the sLSTM cell's two tensors.
The sLSTM layer, RMSNorm and SwiGLU are the LMs' modules (and kernels); the sLSTM runs in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..schemas.blocks import SLSTMLayerConfig
from ..schemas.forecast import TiRexConfig
from .large import SwiGLU
from .norms import RMSNorm
from .slstm import SLSTMLayer
from .state import LMState, run_blocks


class Scale(NamedTuple):
    loc: torch.Tensor
    """(B, 1) mean of each series over its observed values (0 when none is)."""
    scale: torch.Tensor
    """(B, 1) their standard deviation; 1 when nothing is observed, |loc| + 1e-5 for a constant series."""


def nan_standardise(x: torch.Tensor) -> tuple[torch.Tensor, Scale]:
    """(x - loc) / scale per row, NaNs kept (TiRex's scaler: statistics over the observed values only)."""
    loc = torch.nan_to_num(torch.nanmean(x, -1, keepdim=True), nan=0.0)
    scale = torch.nan_to_num(torch.nanmean((x - loc).square(), -1, keepdim=True).sqrt(), nan=1.0)
    scale = torch.where(scale == 0, loc.abs() + 1e-5, scale)
    return (x - loc) / scale, Scale(loc, scale)


class ResidualMLP(nn.Module):
    """output_layer(ReLU(hidden_layer x)) + residual_layer x."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.hidden_layer = nn.Linear(in_dim, hidden)
        self.output_layer = nn.Linear(hidden, out_dim)
        self.residual_layer = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(F.relu(self.hidden_layer(x))) + self.residual_layer(x)


class TiRexBlock(nn.Module):
    """x + sLSTM(RMSNorm x) (no convolution), then x + SwiGLU(RMSNorm x)."""

    def __init__(self, config: TiRexConfig):
        super().__init__()
        D = config.embedding_dim
        layer = SLSTMLayerConfig(**config.slstm.model_dump(), conv1d_kernel_size=0)
        self.norm_slstm = RMSNorm(D, config.norm_eps)
        self.slstm_layer = SLSTMLayer(layer, D, config.kernels, 0.0, config.group_norm_eps)
        self.norm_ffn = RMSNorm(D, config.norm_eps)
        self.ffn = SwiGLU(D, config.ffn_dim)

    def forward(self, x: torch.Tensor, state=None):
        y, state = self.slstm_layer(self.norm_slstm(x), state)
        x = x + y
        return x + self.ffn(self.norm_ffn(x)), state


class TiRex(nn.Module):
    """`forward(context (B, T), prediction_length=None)` -> quantiles (B, Q, prediction_length) in the
    series' own units (default length: config.horizon). NaNs in the context are missing values."""

    def __init__(self, config: TiRexConfig):
        super().__init__()
        self.config = config
        P, D, Q = config.input_patch_size, config.embedding_dim, len(config.quantiles)
        self.input_patch_embedding = ResidualMLP(2 * P, config.input_ff_dim, D)
        self.blocks = nn.ModuleList(TiRexBlock(config) for _ in range(config.num_blocks))
        self.out_norm = RMSNorm(D, config.norm_eps)
        self.output_patch_embedding = ResidualMLP(D, config.input_ff_dim, Q * config.output_patch_size)

    def patch_quantiles(self, patches: torch.Tensor, state: Optional[LMState] = None):
        """Standardised patches (B, N, P), NaN where missing -> the next patch's quantiles (B, N, Q, P), state."""
        observed = (~torch.isnan(patches)).to(patches.dtype)
        x = torch.cat([torch.nan_to_num(patches, nan=self.config.nan_mask_value), observed], -1)
        x, state = run_blocks(self.blocks, self.input_patch_embedding(x), state)
        out = self.output_patch_embedding(self.out_norm(x))
        return out.unflatten(-1, (len(self.config.quantiles), self.config.output_patch_size)), state

    def window(self, context: torch.Tensor) -> torch.Tensor:
        """The last context_length steps, left-padded with NaN when the series is shorter."""
        C = self.config.context_length
        context = context[:, -C:]
        pad = context.new_full((context.shape[0], C - context.shape[1]), float("nan"))
        return torch.cat([pad, context], 1)

    def forecast_patches(self, context: torch.Tensor, count: int) -> torch.Tensor:
        """The next `count` patches in one forward: the window, then count - 1 all-missing patches whose
        outputs are read. Returns quantiles (B, Q, count * P) in the series' units."""
        P = self.config.input_patch_size
        scaled, scale = nan_standardise(self.window(context.float()))
        patches = scaled.unflatten(-1, (-1, P))
        patches = torch.cat([patches, patches.new_full((patches.shape[0], count - 1, P), float("nan"))], 1)
        q, _ = self.patch_quantiles(patches)
        q = q[:, -count:].permute(0, 2, 1, 3).flatten(2)  # (B, Q, count * P)
        return q * scale.scale.unsqueeze(1) + scale.loc.unsqueeze(1)

    def forward(self, context: torch.Tensor, prediction_length: Optional[int] = None,
                patches_per_step: Optional[int] = None) -> torch.Tensor:
        """Roll out ceil(prediction_length / P) patches, `patches_per_step` per forward (default: all in one),
        each later step seeing the earlier ones as missing values (TiRex's rollout), then cut to length."""
        if not isinstance(context, torch.Tensor) or context.dim() != 2:
            got = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
            raise ValueError(f"tirex: expected a context of shape (batch, length), got {got}")
        length = self.config.horizon if prediction_length is None else prediction_length
        if length < 1:
            raise ValueError(f"prediction_length: expected a positive length, got {length}")
        if patches_per_step is not None and patches_per_step < 1:
            raise ValueError(f"patches_per_step: expected a positive count, got {patches_per_step}")
        remaining = math.ceil(length / self.config.output_patch_size)
        per_step = patches_per_step or remaining
        outputs = []
        while remaining > 0:
            count = min(per_step, remaining)
            outputs.append(self.forecast_patches(context, count))
            remaining -= count
            if remaining:
                context = torch.cat([context, torch.full_like(outputs[-1][:, 0], float("nan"))], 1)
        return torch.cat(outputs, -1)[..., :length]
