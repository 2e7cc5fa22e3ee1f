"""The TiRex-style forecaster (NX-AI TiRex, arXiv 2505.23719): per-series scaling with NaN masks, input
patches, sLSTM blocks in the xLSTM Large block layout, a residual MLP to quantiles of the next patch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import MAX_BLOCKS, MAX_FACTOR, MAX_LENGTH, MAX_WIDTH, Schema, round_up
from .blocks import SLSTMCellConfig
from .errors import FieldErrors
from .init import InitConfig, InitRule, slstm_cell_rules
from .kernels import KernelConfig
from .sequence import QUANTILES, check_quantiles
from .weight_decay import DecayRule, WeightDecayConfig, dense_decay_rules


class TiRexConfig(Schema):
    """TiRex: context (B, T) with NaNs -> standardised by its own mean/std -> patches of input_patch_size,
    each concatenated with its NaN mask -> residual MLP -> num_blocks of (x + sLSTM(RMSNorm x),
    x + SwiGLU(RMSNorm x)) -> RMSNorm -> residual MLP -> quantiles x output_patch_size per position.
    Field names follow TiRex's checkpoint hyper-parameters where it has them."""

    kind: Literal["tirex"] = "tirex"
    input_patch_size: int = Field(32, ge=1, le=MAX_WIDTH)
    output_patch_size: int = Field(32, ge=1, le=MAX_WIDTH)
    quantiles: list[float] = QUANTILES
    embedding_dim: int = Field(512, ge=1, le=MAX_WIDTH)
    num_blocks: int = Field(12, ge=1, le=MAX_BLOCKS)
    ffn_proj_factor: float = Field(2.6667, gt=0, le=MAX_FACTOR)
    ffn_round_up_to_multiple_of: int = Field(64, ge=1, le=MAX_WIDTH)
    input_ff_dim: int = Field(2048, ge=1, le=MAX_WIDTH)
    """Hidden width of the input and output residual MLPs."""
    context_length: int = Field(2048, ge=1, le=MAX_LENGTH)
    """TiRex's train_ctx_len: every forward sees exactly this many steps (truncated, or left-padded with NaN)."""
    horizon: int = Field(32, ge=1, le=MAX_LENGTH)
    """Default prediction length, in whole output patches (forecasts of other lengths roll out and cut)."""
    nan_mask_value: float = 0.0
    """What a missing value is replaced with (the mask half of the patch says it is missing)."""
    norm_eps: float = Field(1e-6, gt=0)
    group_norm_eps: float = Field(1e-5, gt=0)
    slstm: SLSTMCellConfig = SLSTMCellConfig()
    """Heads and init of the sLSTM cells."""
    kernels: KernelConfig = KernelConfig()
    init: InitConfig = InitConfig()
    weight_decay: WeightDecayConfig = WeightDecayConfig()

    @property
    def ffn_dim(self) -> int:
        return round_up(self.embedding_dim * self.ffn_proj_factor, self.ffn_round_up_to_multiple_of)

    @model_validator(mode="after")
    def _check(self) -> "TiRexConfig":
        errors = FieldErrors()
        P = self.input_patch_size
        if self.output_patch_size != P:
            errors.add(("output_patch_size",), f"expected input_patch_size ({P}): TiRex predicts the next input "
                       f"patch, got {self.output_patch_size}")
        if self.horizon % self.output_patch_size:
            errors.add(("horizon",), f"expected a multiple of output_patch_size {self.output_patch_size}, got {self.horizon}")
        if self.context_length % P:
            errors.add(("context_length",), f"expected a multiple of input_patch_size {P}, got {self.context_length}")
        heads = self.slstm.num_heads
        if self.embedding_dim % heads:
            errors.add(("slstm", "num_heads"), f"expected a divisor of embedding_dim {self.embedding_dim}, got {heads}")
        elif self.slstm.bias_init == "powerlaw_blockdependent" and self.embedding_dim // heads < 2:
            errors.add(("slstm", "num_heads"), "expected a head dim >= 2 for bias_init powerlaw_blockdependent, got 1")
        if self.init.preset not in ("reference", "torch_default"):
            errors.add(("init", "preset"), f"expected 'reference' or 'torch_default' for tirex, got {self.init.preset!r}")
        errors.raise_if_any()
        check_quantiles(self.quantiles)
        return self

    def init_rules(self) -> list[InitRule]:
        """Module defaults (norms at 1 / offset 0), plus the sLSTM cells' bias and recurrent init."""
        implied = [] if self.init.preset == "torch_default" else [
            r for i in range(self.num_blocks)
            for r in slstm_cell_rules(f"blocks.{i}.slstm_layer.slstm_cell", self.slstm, self.embedding_dim)]
        return [*implied, *self.init.rules]

    def decay_rules(self) -> list[DecayRule]:
        return dense_decay_rules(self.weight_decay)
