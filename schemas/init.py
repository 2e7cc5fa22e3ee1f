"""Initialisation schemes as data: rules that map parameter-name patterns to a scheme.

A model's effective rules are its family preset (the reference init, written out as rules), then the
rules its layers imply (sLSTM `bias_init` / `recurrent_weight_init`), then the user's `init.rules`; for
each parameter the last matching rule wins. Patterns are fnmatch globs over `named_parameters()` names.
xLSTM Large rules name the single-layout projections: fused models are initialised in that layout, then
stacked (registry.builder.instantiate).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .base import Schema


class SmallInit(Schema):
    """N(0, sqrt(2 / (5 dim))) (Nguyen & Salazar); dim defaults to the embedding dim."""

    kind: Literal["small_init"] = "small_init"
    dim: Optional[int] = Field(None, gt=0)


class WangInit(Schema):
    """N(0, 2 / (num_blocks sqrt(dim))) for output projections; defaults to the model's dims."""

    kind: Literal["wang_init"] = "wang_init"
    dim: Optional[int] = Field(None, gt=0)
    num_blocks: Optional[int] = Field(None, gt=0)


class BiasLinspace(Schema):
    """Evenly spaced values from start to end over the vector, or over each head of one gate's bias."""

    kind: Literal["bias_linspace"] = "bias_linspace"
    start: float
    end: float
    gate: Optional[Literal["i", "f", "z", "o"]] = None
    """For gate-structured (NH, 4, DH) sLSTM biases: the gate that gets the ramp, the others are zero."""


class PowerLawBlockDependent(Schema):
    """sLSTM forget-gate bias -(-5 + 12 (j/(DH-1))^(0.3 + 1.3 r)), r = block_idx / (num_blocks - 1)."""

    kind: Literal["powerlaw_blockdependent"] = "powerlaw_blockdependent"


class Constant(Schema):
    kind: Literal["constant"] = "constant"
    value: float


class Normal(Schema):
    kind: Literal["normal"] = "normal"
    mean: float = 0.0
    std: float = Field(0.02, ge=0)


class TruncNormal(Schema):
    """N(mean, std) truncated to [mean - 2, mean + 2] (torch's trunc_normal_ bounds)."""

    kind: Literal["trunc_normal"] = "trunc_normal"
    mean: float = 0.0
    std: float = Field(0.02, ge=0)


class XavierUniform(Schema):
    """Glorot uniform with the fans of the weight seen as a matrix (out, everything else): a patch
    convolution initialised like the Linear it is."""

    kind: Literal["xavier_uniform"] = "xavier_uniform"


class Uniform(Schema):
    kind: Literal["uniform"] = "uniform"
    low: float
    high: float


class Zeros(Schema):
    kind: Literal["zeros"] = "zeros"


class Ones(Schema):
    kind: Literal["ones"] = "ones"


class TorchDefault(Schema):
    """Leave the parameter as PyTorch's module constructor made it."""

    kind: Literal["torch_default"] = "torch_default"


InitScheme = Annotated[
    Union[SmallInit, WangInit, BiasLinspace, PowerLawBlockDependent, Constant, Normal, TruncNormal, XavierUniform, Uniform,
          Zeros, Ones, TorchDefault],
    Field(discriminator="kind"),
]


class InitRule(Schema):
    params: str = Field(min_length=1)
    """fnmatch pattern over parameter names, e.g. `*.mlstm_layer.igate_preact.bias`."""
    init: InitScheme


class InitConfig(Schema):
    preset: Literal["reference", "xlstm-7b", "transformers", "torch_default"] = "reference"
    """reference: the family's published init (NeurIPS: NX-AI xlstm; Large: the 7B training init of
    xlstm-jax, same as `xlstm-7b`); transformers: transformers' `_init_weights`; torch_default: none."""
    rules: list[InitRule] = []
    """Applied after the preset; the last matching rule wins."""


def rule(params: str, scheme) -> InitRule:
    return InitRule(params=params, init=scheme)


NEURIPS_RULES = [
    rule("*.bias", Zeros()),
    rule("*norm.weight", Zeros()),  # norms store an offset: effective scale 1 + w
    rule("token_embedding.weight", SmallInit()),
    rule("lm_head.weight", SmallInit()),
    rule("*.xlstm.proj_up.weight", SmallInit()),
    rule("*.xlstm.[qkv]_proj.weight", SmallInit()),
    rule("*.xlstm.proj_down.weight", WangInit()),
    rule("*.xlstm.learnable_skip", Ones()),
    rule("*.mlstm_cell.[if]gate.weight", Zeros()),
    rule("*.mlstm_cell.fgate.bias", BiasLinspace(start=3.0, end=6.0)),
    rule("*.mlstm_cell.igate.bias", Normal(std=0.1)),
    rule("*.xlstm.[ifzo]gate.weight", SmallInit()),
    rule("*.ffn.proj_up.weight", SmallInit()),
    rule("*.ffn.proj_down.weight", WangInit()),
    rule("*.conv1d.conv.*", TorchDefault()),
]

XLSTM_7B_RULES = [
    rule("backbone.embeddings.weight", SmallInit()),
    rule("lm_head.weight", SmallInit()),
    rule("*norm*.weight", Ones()),
    rule("*.bias", Zeros()),
    rule("*.mlstm_layer.[qkv].weight", SmallInit()),
    rule("*.mlstm_layer.ogate_preact.weight", Zeros()),
    rule("*.mlstm_layer.[if]gate_preact.weight", Zeros()),
    rule("*.mlstm_layer.igate_preact.bias", Constant(value=-10.0)),
    rule("*.mlstm_layer.fgate_preact.bias", BiasLinspace(start=3.0, end=6.0)),
    rule("*.mlstm_layer.out_proj.weight", WangInit()),
    rule("*.ffn.proj_up*.weight", SmallInit()),
    rule("*.ffn.proj_down.weight", WangInit()),
]

# transformers' _init_weights: every Linear whose name contains "gate" is zeroed (FFN gate included), the
# FFN down-projection's wang std uses the FFN width.
TRANSFORMERS_RULES = [
    rule("backbone.embeddings.weight", SmallInit()),
    rule("*.weight", SmallInit()),
    rule("*norm*.weight", Ones()),
    rule("*.bias", Zeros()),
    rule("*gate*.weight", Zeros()),
    rule("*.mlstm_layer.igate_preact.bias", Constant(value=-10.0)),
    rule("*.mlstm_layer.fgate_preact.bias", BiasLinspace(start=3.0, end=6.0)),
    rule("*.mlstm_layer.out_proj.weight", WangInit()),
]


def slstm_cell_rules(cell: str, layer, dim: int) -> list[InitRule]:
    """The rules an sLSTM layer's `bias_init` / `recurrent_weight_init` (SLSTMCellConfig) imply for the
    cell named `cell` (a parameter-name prefix) in a model of width `dim`."""
    bound = 1 / math.sqrt(dim)
    bias = {"powerlaw_blockdependent": PowerLawBlockDependent(), "small_init": BiasLinspace(start=3.0, end=6.0, gate="f"),
            "standard": Uniform(low=-bound, high=bound), "zeros": Zeros()}[layer.bias_init]
    recurrent = {"zeros": Zeros(), "standard": Uniform(low=-bound, high=bound)}[layer.recurrent_weight_init]
    return [rule(f"{cell}.bias", bias), rule(f"{cell}.recurrent_kernel", recurrent)]
