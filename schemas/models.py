"""Whole language models: the NeurIPS xLSTM (`xlstm-lm`) and xLSTM Large / 7B (`xlstm-large-lm`)."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import Schema
from .blocks import BlockConfig, MLSTMBlockConfig, SLSTMBlockConfig, XLSTMLargeBlockConfig
from .errors import FieldErrors
from .init import (
    NEURIPS_RULES, TRANSFORMERS_RULES, XLSTM_7B_RULES, BiasLinspace, InitConfig, InitRule, PowerLawBlockDependent,
    Uniform, Zeros, rule,
)
from .kernels import KernelConfig
from .weight_decay import DecayRule, WeightDecayConfig, neurips_rules, xlstm_7b_rules


class XLSTMLMConfig(Schema):
    """NeurIPS xLSTM language model: embedding, a stack of mLSTM / sLSTM blocks, post-norm, head."""

    kind: Literal["xlstm-lm"] = "xlstm-lm"
    vocab_size: int = Field(ge=1)
    embedding_dim: int = Field(ge=1)
    num_blocks: int = Field(ge=1)
    context_length: int = Field(2048, ge=1)
    """Training context; informational (the model takes any length)."""
    tie_weights: bool = False
    weight_decay_on_embedding: bool = False
    add_embedding_dropout: bool = False
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
    kernels: KernelConfig = KernelConfig()
    init: InitConfig = InitConfig()
    weight_decay: WeightDecayConfig = WeightDecayConfig()

    def slstm_positions(self) -> list[int]:
        return list(range(self.num_blocks)) if self.slstm_at == "all" else sorted(self.slstm_at)

    def block_configs(self) -> list[MLSTMBlockConfig | SLSTMBlockConfig]:
        if self.blocks is not None:
            return list(self.blocks)
        slstm = set(self.slstm_positions())
        return [self.slstm_block if i in slstm else self.mlstm_block for i in range(self.num_blocks)]

    @model_validator(mode="after")
    def _check(self) -> "XLSTMLMConfig":
        errors = FieldErrors()
        if self.init.preset not in ("reference", "torch_default"):
            errors.add(("init", "preset"), f"expected 'reference' or 'torch_default' for an xlstm-lm, got {self.init.preset!r}")
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

    def init_rules(self) -> list[InitRule]:
        """Effective init rules: preset, then what the sLSTM layers ask for, then the user's rules."""
        preset = NEURIPS_RULES if self.init.preset == "reference" else []
        implied = []
        for i, block in enumerate(self.block_configs()):
            if block.kind != "slstm-block" or self.init.preset == "torch_default":
                continue
            cell = f"xlstm_block_stack.blocks.{i}.xlstm.slstm_cell"
            bound = 1 / math.sqrt(self.embedding_dim)
            bias = {"powerlaw_blockdependent": PowerLawBlockDependent(),
                    "small_init": BiasLinspace(start=3.0, end=6.0, gate="f"),
                    "standard": Uniform(low=-bound, high=bound), "zeros": Zeros()}[block.slstm.bias_init]
            recurrent = {"zeros": Zeros(), "standard": Uniform(low=-bound, high=bound)}[block.slstm.recurrent_weight_init]
            implied += [rule(f"{cell}.bias", bias), rule(f"{cell}.recurrent_kernel", recurrent)]
        return [*preset, *implied, *self.init.rules]

    def decay_rules(self) -> list[DecayRule]:
        emb = "token_embedding.weight"
        preset = {"reference": neurips_rules(emb, self.weight_decay_on_embedding),
                  "neurips": neurips_rules(emb, self.weight_decay_on_embedding),
                  "xlstm-7b": xlstm_7b_rules(emb), "none": []}[self.weight_decay.preset]
        return [*preset, *self.weight_decay.rules]


class XLSTMLargeLMConfig(XLSTMLargeBlockConfig):
    """xLSTM Large (the 7B architecture): embedding, num_blocks Large blocks, RMSNorm, head, logit soft-cap."""

    kind: Literal["xlstm-large-lm"] = "xlstm-large-lm"
    vocab_size: int = Field(ge=1)
    num_blocks: int = Field(ge=1)
    context_length: int = Field(8192, ge=1)
    """Training context; informational (the model takes any length)."""
    add_out_norm: bool = True
    output_logit_soft_cap: Optional[float] = Field(30.0, gt=0)
    tie_word_embeddings: bool = False
    kernels: KernelConfig = KernelConfig()
    init: InitConfig = InitConfig()
    weight_decay: WeightDecayConfig = WeightDecayConfig()

    @model_validator(mode="after")
    def _check(self) -> "XLSTMLargeLMConfig":
        errors = FieldErrors()
        for name, dim in (("qk_dim_factor", self.qk_dim), ("v_dim_factor", self.v_dim)):
            if dim < self.num_heads or dim % self.num_heads:
                errors.add((name,), f"expected int(embedding_dim x {name}) = {dim} to be a positive multiple "
                           f"of num_heads {self.num_heads}")
        errors.raise_if_any()
        return self

    def init_rules(self) -> list[InitRule]:
        preset = {"reference": XLSTM_7B_RULES, "xlstm-7b": XLSTM_7B_RULES, "transformers": TRANSFORMERS_RULES,
                  "torch_default": []}[self.init.preset]
        return [*preset, *self.init.rules]

    def decay_rules(self) -> list[DecayRule]:
        emb = "backbone.embeddings.weight"
        preset = {"reference": xlstm_7b_rules(emb), "xlstm-7b": xlstm_7b_rules(emb),
                  "neurips": neurips_rules(emb, False), "none": []}[self.weight_decay.preset]
        return [*preset, *self.weight_decay.rules]


ModelConfig = Annotated[Union[XLSTMLMConfig, XLSTMLargeLMConfig], Field(discriminator="kind")]
