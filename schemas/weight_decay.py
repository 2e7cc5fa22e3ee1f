"""Which parameters get weight decay, as rules over parameter names (the last matching rule wins)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Schema


class DecayRule(Schema):
    params: str = Field(min_length=1)
    """fnmatch pattern over parameter names."""
    decay: bool


class WeightDecayConfig(Schema):
    preset: Literal["reference", "neurips", "xlstm-7b", "none"] = "reference"
    """reference: the family's published rule. neurips: decay names containing `weight` but not `norm`
    (NX-AI xlstm; the embedding per `weight_decay_on_embedding`). xlstm-7b: decay every dense kernel
    (gates and lm head included), never embeddings, norms or biases (xlstm-jax `.*kernel`). none: no decay."""
    rules: list[DecayRule] = []
    """Applied after the preset."""


def neurips_rules(embedding: str, decay_embedding: bool) -> list[DecayRule]:
    return [
        DecayRule(params="*weight*", decay=True),
        DecayRule(params="*norm*", decay=False),
        DecayRule(params=embedding, decay=decay_embedding),
    ]


def xlstm_7b_rules(embedding: str) -> list[DecayRule]:
    return [
        DecayRule(params="*.weight", decay=True),
        DecayRule(params="*norm*", decay=False),
        DecayRule(params=embedding, decay=False),
    ]


def dense_decay_rules(config: WeightDecayConfig) -> list[DecayRule]:
    """Models without an embedding (backbones, forecasters): every dense kernel decays (input projection and
    head included), norms and biases do not; `none` decays nothing. The user's rules come last."""
    preset = [] if config.preset == "none" else [DecayRule(params="*.weight", decay=True),
                                                 DecayRule(params="*norm*", decay=False)]
    return [*preset, *config.rules]
