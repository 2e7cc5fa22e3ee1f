"""Layers and blocks of both xLSTM families. Field names follow NX-AI xlstm / transformers."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import MAX_BLOCKS, MAX_FACTOR, MAX_KERNEL, MAX_WIDTH, Schema, round_up
from .errors import FieldErrors
from .init import InitRule, slstm_cell_rules


class UpProjection(Schema):
    """Up-projection width: proj_factor * dim, rounded (up or down) to a multiple, as NX-AI does."""

    proj_factor: float = Field(2.0, gt=0, le=MAX_FACTOR)
    round_proj_up_dim_up: bool = True
    round_proj_up_to_multiple_of: int = Field(64, ge=1, le=MAX_WIDTH)

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
    conv1d_kernel_size: int = Field(4, ge=1, le=MAX_KERNEL)
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
    conv1d_kernel_size: int = Field(4, ge=0, le=MAX_KERNEL)
    """0 disables the convolution."""
    group_norm_weight: bool = True


class GatedFFNConfig(UpProjection):
    """Gated feed-forward: proj_down(act(gate) * up)."""

    kind: Literal["gated-ffn"] = "gated-ffn"
    proj_factor: float = Field(1.3, gt=0, le=MAX_FACTOR)
    act_fn: Literal["gelu", "relu", "relu^2", "sigmoid", "swish", "selu"] = "gelu"
    bias: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)


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

    embedding_dim: int = Field(ge=1, le=MAX_WIDTH)
    num_heads: int = Field(8, ge=1)
    use_bias: bool = False
    norm_eps: float = Field(1e-6, gt=0)
    norm_reduction_force_float32: bool = True
    qk_dim_factor: float = Field(0.5, gt=0, le=MAX_FACTOR)
    v_dim_factor: float = Field(1.0, gt=0, le=MAX_FACTOR)
    gate_soft_cap: Optional[float] = Field(15.0, gt=0)
    """cap * tanh(x / cap) on the gate pre-activations; null disables it."""
    ffn_proj_factor: float = Field(2.6667, gt=0, le=MAX_FACTOR)
    ffn_round_up_to_multiple_of: int = Field(64, ge=1, le=MAX_WIDTH)
    weight_mode: Literal["single", "fused"] = "single"
    """single: separate q/k/v/o and gate projections; fused: one matrix each (same math, fewer launches)."""

    @model_validator(mode="after")
    def _check_heads(self) -> "XLSTMLargeBlockConfig":
        errors = FieldErrors()
        for name, dim in (("qk_dim_factor", self.qk_dim), ("v_dim_factor", self.v_dim)):
            if dim < self.num_heads or dim % self.num_heads:
                errors.add((name,), f"expected int(embedding_dim x {name}) = {dim} to be a positive multiple "
                           f"of num_heads {self.num_heads}")
        errors.raise_if_any()
        return self

    @property
    def qk_dim(self) -> int:
        return int(self.embedding_dim * self.qk_dim_factor)

    @property
    def v_dim(self) -> int:
        return int(self.embedding_dim * self.v_dim_factor)

    @property
    def ffn_dim(self) -> int:
        return round_up(self.embedding_dim * self.ffn_proj_factor, self.ffn_round_up_to_multiple_of)


class XLSTMBlockStackConfig(Schema):
    """The NeurIPS block stack: which block goes where (`slstm_at` with templates, or an explicit list)."""

    embedding_dim: int = Field(ge=1, le=MAX_WIDTH)
    num_blocks: int = Field(ge=1, le=MAX_BLOCKS)
    context_length: int = Field(2048, ge=1)
    """Training context; informational (the model takes any length)."""
    add_post_blocks_norm: bool = True
    bias: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    norm_eps: float = Field(1e-5, gt=0)
    mlstm_block: Optional[MLSTMBlockConfig] = None
    """Template of the mLSTM blocks (every position not in slstm_at)."""
    slstm_block: Optional[SLSTMBlockConfig] = None
    """Template of the sLSTM blocks (the positions in slstm_at)."""
    slstm_at: Union[list[int], Literal["all"]] = []
    blocks: Optional[list[BlockConfig]] = None
    """Explicit per-position blocks, instead of the templates and slstm_at."""

    def slstm_positions(self) -> list[int]:
        return list(range(self.num_blocks)) if self.slstm_at == "all" else sorted(self.slstm_at)

    def block_configs(self) -> list[MLSTMBlockConfig | SLSTMBlockConfig]:
        if self.blocks is not None:
            return list(self.blocks)
        slstm = set(self.slstm_positions())
        return [self.slstm_block if i in slstm else self.mlstm_block for i in range(self.num_blocks)]

    def slstm_rules(self, blocks: str) -> list[InitRule]:
        """Init rules the sLSTM layers imply, for blocks named `{blocks}.{i}` (NeurIPS layout)."""
        return [r for i, block in enumerate(self.block_configs()) if block.kind == "slstm-block"
                for r in slstm_cell_rules(f"{blocks}.{i}.xlstm.slstm_cell", block.slstm, self.embedding_dim)]

    @model_validator(mode="after")
    def _check_stack(self) -> "XLSTMBlockStackConfig":
        errors = FieldErrors()
        if self.blocks is not None:
            if len(self.blocks) != self.num_blocks:
                errors.add(("blocks",), f"expected num_blocks={self.num_blocks} entries, got {len(self.blocks)}")
            if self.slstm_at:
                errors.add(("slstm_at",), "expected no slstm_at when an explicit `blocks` list is given")
            blocks = [(("blocks", i), b) for i, b in enumerate(self.blocks)]
        else:
            positions = self.slstm_positions()
            for j, p in enumerate(positions):
                if not 0 <= p < self.num_blocks:
                    errors.add(("slstm_at", j), f"expected a block index in [0, {self.num_blocks - 1}], got {p}")
            if len(set(positions)) != len(positions):
                errors.add(("slstm_at",), f"expected distinct block indices, got {positions}")
            if positions and self.slstm_block is None:
                errors.add(("slstm_block",), "expected an slstm_block template because slstm_at is not empty")
            if len(set(positions)) < self.num_blocks and self.mlstm_block is None:
                errors.add(("mlstm_block",), "expected an mlstm_block template for the positions not in slstm_at")
            blocks = [(("mlstm_block",), self.mlstm_block), (("slstm_block",), self.slstm_block)]
        for loc, block in blocks:
            if block is not None:
                self._check_block(errors, loc, block)
        errors.raise_if_any()
        return self

    def _check_block(self, errors: FieldErrors, loc: tuple, block) -> None:
        D = self.embedding_dim
        if block.kind == "mlstm-block":
            layer = block.mlstm
            inner = layer.proj_up_dim(D)
            for name in ("num_heads", "qkv_proj_blocksize"):
                value = getattr(layer, name)
                if inner % value:
                    errors.add(loc + ("mlstm", name), f"expected a divisor of the inner dim {inner} "
                               f"(= proj_factor {layer.proj_factor} x embedding_dim {D}, rounded), got {value}")
        else:
            layer = block.slstm
            if D % layer.num_heads:
                errors.add(loc + ("slstm", "num_heads"), f"expected a divisor of embedding_dim {D}, got {layer.num_heads}")
            elif layer.bias_init == "powerlaw_blockdependent" and D // layer.num_heads < 2:
                errors.add(loc + ("slstm", "num_heads"),
                           "expected a head dim >= 2 for bias_init powerlaw_blockdependent, got 1")
