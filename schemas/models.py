"""Whole models by kind: the NeurIPS xLSTM (`xlstm-lm`), xLSTM Large / 7B (`xlstm-large-lm`), Vision-LSTM (`vil`),
backbones for continuous inputs (`xlstm-backbone`, schemas/sequence.py) and the TiRex forecaster (`tirex`)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import MAX_BLOCKS, MAX_VOCAB, Schema
from .blocks import XLSTMBlockStackConfig, XLSTMLargeBlockConfig
from .errors import FieldErrors
from .forecast import TiRexConfig
from .init import NEURIPS_RULES, TRANSFORMERS_RULES, XLSTM_7B_RULES, InitConfig, InitRule
from .kernels import KernelConfig
from .sequence import XLSTMBackboneConfig
from .vision import ViLConfig
from .weight_decay import DecayRule, WeightDecayConfig, neurips_rules, xlstm_7b_rules


class TokenIds(Schema):
    """Special token ids of the tokenizer the model was trained with (generation stops at eos)."""

    bos_token_id: Optional[int] = Field(None, ge=0)
    eos_token_id: Optional[int] = Field(None, ge=0)
    pad_token_id: Optional[int] = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_token_ids(self) -> "TokenIds":
        """An id past the vocabulary would index past the embedding (on CUDA: a device-side assert)."""
        errors = FieldErrors()
        vocab = getattr(self, "vocab_size", None)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if vocab is not None and value is not None and value >= vocab:
                errors.add((name,), f"expected a token id below vocab_size {vocab}, got {value}")
        errors.raise_if_any()
        return self


class XLSTMLMConfig(XLSTMBlockStackConfig, TokenIds):
    """NeurIPS xLSTM language model: embedding, the block stack, head (optionally tied)."""

    kind: Literal["xlstm-lm"] = "xlstm-lm"
    vocab_size: int = Field(ge=1, le=MAX_VOCAB)
    tie_weights: bool = False
    weight_decay_on_embedding: bool = False
    add_embedding_dropout: bool = False
    kernels: KernelConfig = KernelConfig()
    init: InitConfig = InitConfig()
    weight_decay: WeightDecayConfig = WeightDecayConfig()

    @model_validator(mode="after")
    def _check_init(self) -> "XLSTMLMConfig":
        if self.init.preset not in ("reference", "torch_default"):
            errors = FieldErrors()
            errors.add(("init", "preset"), f"expected 'reference' or 'torch_default' for an xlstm-lm, got {self.init.preset!r}")
            errors.raise_if_any()
        return self

    def init_rules(self) -> list[InitRule]:
        """Effective init rules: preset, then what the sLSTM layers ask for, then the user's rules."""
        preset = NEURIPS_RULES if self.init.preset == "reference" else []
        implied = [] if self.init.preset == "torch_default" else self.slstm_rules("xlstm_block_stack.blocks")
        return [*preset, *implied, *self.init.rules]

    def decay_rules(self) -> list[DecayRule]:
        emb = "token_embedding.weight"
        preset = {"reference": neurips_rules(emb, self.weight_decay_on_embedding),
                  "neurips": neurips_rules(emb, self.weight_decay_on_embedding),
                  "xlstm-7b": xlstm_7b_rules(emb), "none": []}[self.weight_decay.preset]
        return [*preset, *self.weight_decay.rules]


class XLSTMLargeLMConfig(XLSTMLargeBlockConfig, TokenIds):
    """xLSTM Large (the 7B architecture): embedding, num_blocks Large blocks, RMSNorm, head, logit soft-cap."""

    kind: Literal["xlstm-large-lm"] = "xlstm-large-lm"
    vocab_size: int = Field(ge=1, le=MAX_VOCAB)
    num_blocks: int = Field(ge=1, le=MAX_BLOCKS)
    context_length: int = Field(8192, ge=1)
    """Training context; informational (the model takes any length)."""
    add_out_norm: bool = True
    output_logit_soft_cap: Optional[float] = Field(30.0, gt=0)
    tie_word_embeddings: bool = False
    kernels: KernelConfig = KernelConfig()
    init: InitConfig = InitConfig()
    weight_decay: WeightDecayConfig = WeightDecayConfig()

    def init_rules(self) -> list[InitRule]:
        preset = {"reference": XLSTM_7B_RULES, "xlstm-7b": XLSTM_7B_RULES, "transformers": TRANSFORMERS_RULES,
                  "torch_default": []}[self.init.preset]
        return [*preset, *self.init.rules]

    def decay_rules(self) -> list[DecayRule]:
        emb = "backbone.embeddings.weight"
        preset = {"reference": xlstm_7b_rules(emb), "xlstm-7b": xlstm_7b_rules(emb),
                  "neurips": neurips_rules(emb, False), "none": []}[self.weight_decay.preset]
        return [*preset, *self.weight_decay.rules]


MODEL_SCHEMAS: dict[str, type] = {"xlstm-lm": XLSTMLMConfig, "xlstm-large-lm": XLSTMLargeLMConfig, "vil": ViLConfig,
                                  "xlstm-backbone": XLSTMBackboneConfig, "tirex": TiRexConfig}
"""Each model kind's schema (checkpoint readers pick one by the `kind` they find)."""
ModelConfig = Annotated[Union[XLSTMLMConfig, XLSTMLargeLMConfig, ViLConfig, XLSTMBackboneConfig, TiRexConfig],
                        Field(discriminator="kind")]
