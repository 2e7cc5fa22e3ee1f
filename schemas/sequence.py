"""Sequence models over continuous inputs: the `xlstm-backbone` (input projection, the block stack of
either family, optionally bidirectional, a head chosen by `kind`), which MLSTM / SLSTM also build on."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import MAX_BLOCKS, MAX_LENGTH, MAX_VOCAB, MAX_WIDTH, Schema
from .blocks import XLSTMBlockStackConfig, XLSTMLargeBlockConfig
from .errors import FieldErrors
from .init import NEURIPS_RULES, XLSTM_7B_RULES, InitConfig, InitRule
from .kernels import KernelConfig
from .weight_decay import DecayRule, WeightDecayConfig, dense_decay_rules

QUANTILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


class NeurIPSStackConfig(XLSTMBlockStackConfig):
    """The NeurIPS block stack (mLSTM / sLSTM blocks, `slstm_at` or an explicit `blocks` list)."""

    kind: Literal["xlstm-stack"] = "xlstm-stack"


class LargeStackConfig(XLSTMLargeBlockConfig):
    """num_blocks xLSTM Large blocks (RMSNorm, mLSTM with soft-capped gates, SwiGLU), then an RMSNorm."""

    kind: Literal["xlstm-large-stack"] = "xlstm-large-stack"
    num_blocks: int = Field(ge=1, le=MAX_BLOCKS)
    add_out_norm: bool = True


StackConfig = Annotated[Union[NeurIPSStackConfig, LargeStackConfig], Field(discriminator="kind")]


class BidirectionalConfig(Schema):
    """A second stack runs over the flipped sequence; its outputs are flipped back and merged."""

    merge: Literal["concat", "sum"] = "concat"
    """concat: features of width 2 x embedding_dim (nn.LSTM's layout: forward, then backward); sum: embedding_dim."""


Pooling = Literal["last", "mean", "max"]
"""last: the forward direction's final step (merged with the backward direction's, which is position 0);
mean / max: over positions of the merged features."""


class ClassificationHead(Schema):
    kind: Literal["classification"] = "classification"
    num_classes: int = Field(ge=2, le=MAX_VOCAB)
    pooling: Pooling = "last"
    dropout: float = Field(0.0, ge=0, lt=1)


class RegressionHead(Schema):
    kind: Literal["regression"] = "regression"
    output_size: int = Field(1, ge=1, le=MAX_WIDTH)
    pooling: Union[Pooling, Literal["none"]] = "last"
    """none: one prediction per position (sequence labelling)."""


class QuantileHead(Schema):
    """`horizon` future values at each quantile level, from the pooled features."""

    kind: Literal["quantile-forecast"] = "quantile-forecast"
    horizon: int = Field(ge=1, le=MAX_LENGTH)
    quantiles: list[float] = QUANTILES
    pooling: Pooling = "last"

    @model_validator(mode="after")
    def _levels(self) -> "QuantileHead":
        check_quantiles(self.quantiles)
        return self


def check_quantiles(levels: list[float], loc: tuple = ("quantiles",)) -> None:
    errors = FieldErrors()
    if not levels or any(not 0 < q < 1 for q in levels) or sorted(set(levels)) != levels:
        errors.add(loc, f"expected distinct increasing levels strictly between 0 and 1, got {levels}")
    errors.raise_if_any()


HeadConfig = Annotated[Union[ClassificationHead, RegressionHead, QuantileHead], Field(discriminator="kind")]


class XLSTMBackboneConfig(Schema):
    """input_proj (input_size -> embedding_dim, no embedding) -> stack (and a flipped-sequence stack when
    bidirectional) -> head. `forward(x (B, S, input_size), state)` -> BackboneOutput(output, features, state)."""

    kind: Literal["xlstm-backbone"] = "xlstm-backbone"
    input_size: int = Field(ge=1, le=MAX_WIDTH)
    input_bias: bool = True
    stack: StackConfig
    bidirectional: Optional[BidirectionalConfig] = None
    head: Optional[HeadConfig] = None
    """None: the output is the features themselves."""
    kernels: KernelConfig = KernelConfig()
    init: InitConfig = InitConfig()
    weight_decay: WeightDecayConfig = WeightDecayConfig()

    @property
    def embedding_dim(self) -> int:
        return self.stack.embedding_dim

    @property
    def num_blocks(self) -> int:
        return self.stack.num_blocks

    @property
    def directions(self) -> list[str]:
        return ["forward", "backward"] if self.bidirectional else ["forward"]

    @property
    def feature_dim(self) -> int:
        concat = self.bidirectional is not None and self.bidirectional.merge == "concat"
        return 2 * self.embedding_dim if concat else self.embedding_dim

    @model_validator(mode="after")
    def _check_init(self) -> "XLSTMBackboneConfig":
        large = self.stack.kind == "xlstm-large-stack"
        allowed = ("reference", "xlstm-7b", "torch_default") if large else ("reference", "torch_default")
        if self.init.preset not in allowed:
            errors = FieldErrors()
            errors.add(("init", "preset"), f"expected one of {', '.join(allowed)} for a {self.stack.kind}, "
                       f"got {self.init.preset!r}")
            errors.raise_if_any()
        return self

    def init_rules(self) -> list[InitRule]:
        """The stack family's reference rules (and the sLSTM layers' implied ones), then the user's."""
        if self.init.preset == "torch_default":
            return list(self.init.rules)
        if self.stack.kind == "xlstm-large-stack":
            return [*XLSTM_7B_RULES, *self.init.rules]
        implied = [r for d in self.directions for r in self.stack.slstm_rules(f"stack.{d}_stack.blocks")]
        return [*NEURIPS_RULES, *implied, *self.init.rules]

    def decay_rules(self) -> list[DecayRule]:
        return dense_decay_rules(self.weight_decay)
