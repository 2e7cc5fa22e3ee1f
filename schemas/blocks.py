"""Layers and blocks of both xLSTM families. Field names follow NX-AI xlstm / transformers."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .base import Schema, round_up


class UpProjection(Schema):
    """Up-projection width: proj_factor * dim, rounded (up or down) to a multiple, as NX-AI does."""

    proj_factor: float = Field(2.0, gt=0)
    round_proj_up_dim_up: bool = True
    round_proj_up_to_multiple_of: int = Field(64, ge=1)

    def proj_up_dim(self, dim: int) -> int:
        steps = self.proj_factor * dim / self.round_proj_up_to_multiple_of
        steps = math.ceil(steps) if self.round_proj_up_dim_up else math.floor(steps)
        return int(steps * self.round_proj_up_to_multiple_of)


class MLSTMCellConfig(Schema):
    """The NeurIPS mLSTM cell: matrix memory with exponential input and sigmoid forget gates."""

    num_heads: int = Field(4, ge=1)


class MLSTMLayerConfig(MLSTMCellConfig, UpProjection):
    """NeurIPS mLSTM layer (pre up-projection): conv, block-diagonal q/k/v, learnable skip, output gate."""

    kind: Literal["mlstm-layer"] = "mlstm-layer"
    conv1d_kernel_size: int = Field(4, ge=1)
    qkv_proj_blocksize: int = Field(4, ge=1)


class SLSTMCellConfig(Schema):
    """The sLSTM cell: scalar memory, head-wise recurrence, exponential gating with a stabiliser."""

    num_heads: int = Field(4, ge=1)
    function: Literal["slstm"] = "slstm"
    bias_init: Literal["powerlaw_blockdependent", "small_init", "standard", "zeros"] = "powerlaw_blockdependent"
    recurrent_weight_init: Literal["zeros", "standard"] = "zeros"


class SLSTMLayerConfig(SLSTMCellConfig):
    """NeurIPS sLSTM layer: optional causal conv feeding the i/f gates, group norm over heads."""

    kind: Literal["slstm-layer"] = "slstm-layer"
    conv1d_kernel_size: int = Field(4, ge=0)
    """0 disables the convolution."""
    group_norm_weight: bool = True


class GatedFFNConfig(UpProjection):
    """Gated feed-forward: proj_down(act(gate) * up)."""

    kind: Literal["gated-ffn"] = "gated-ffn"
    proj_factor: float = Field(1.3, gt=0)
    act_fn: Literal["gelu", "relu", "relu^2", "sigmoid", "swish", "selu"] = "gelu"


class MLSTMBlockConfig(Schema):
    """Residual block around an mLSTM layer (no feed-forward by default)."""

    kind: Literal["mlstm-block"] = "mlstm-block"
    mlstm: MLSTMLayerConfig = MLSTMLayerConfig()
    feedforward: Optional[GatedFFNConfig] = None


class SLSTMBlockConfig(Schema):
    """Residual block around an sLSTM layer, followed by a gated feed-forward (post up-projection)."""

    kind: Literal["slstm-block"] = "slstm-block"
    slstm: SLSTMLayerConfig = SLSTMLayerConfig()
    feedforward: Optional[GatedFFNConfig] = GatedFFNConfig()


BlockConfig = Annotated[Union[MLSTMBlockConfig, SLSTMBlockConfig], Field(discriminator="kind")]


class XLSTMLargeBlockConfig(Schema):
    """The xLSTM Large (7B) block: RMSNorm, mLSTM layer with soft-capped gates and per-head norm, SwiGLU."""

    embedding_dim: int = Field(ge=1)
    num_heads: int = Field(8, ge=1)
    use_bias: bool = False
    norm_eps: float = Field(1e-6, gt=0)
    norm_reduction_force_float32: bool = True
    qk_dim_factor: float = Field(0.5, gt=0)
    v_dim_factor: float = Field(1.0, gt=0)
    gate_soft_cap: Optional[float] = Field(15.0, gt=0)
    """cap * tanh(x / cap) on the gate pre-activations; null disables it."""
    ffn_proj_factor: float = Field(2.6667, gt=0)
    ffn_round_up_to_multiple_of: int = Field(64, ge=1)
    weight_mode: Literal["single", "fused"] = "single"
    """single: separate q/k/v/o and gate projections; fused: one matrix each (same math, fewer launches)."""

    @property
    def qk_dim(self) -> int:
        return int(self.embedding_dim * self.qk_dim_factor)

    @property
    def v_dim(self) -> int:
        return int(self.embedding_dim * self.v_dim_factor)

    @property
    def ffn_dim(self) -> int:
        return round_up(self.embedding_dim * self.ffn_proj_factor, self.ffn_round_up_to_multiple_of)
