"""Recurrent states carried between calls (streaming, truncated backprop, generation).

Every module takes `state=None` (start from zeros) or the state it returned before, and returns a new
state; it never writes into the one it was given. States are small dataclasses of tensors with
`detach()` (cut the graph between truncated-backprop windows) and `map(fn)` (move, cast, reorder).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch


class State:
    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        """A new state with `fn` applied to every tensor."""

        def apply(value):
            if isinstance(value, torch.Tensor):
                return fn(value)
            if isinstance(value, State):
                return value.map(fn)
            if isinstance(value, (list, tuple)):
                return type(value)(apply(v) for v in value)
            return value

        return dataclasses.replace(self, **{f.name: apply(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the state, in a fixed order (that of `map`)."""
        out: list[torch.Tensor] = []
        self.map(lambda t: out.append(t) or t)
        return out

    def detach(self):
        return self.map(torch.Tensor.detach)

    def to(self, *args, **kwargs):
        return self.map(lambda t: t.to(*args, **kwargs))


@dataclass
class MLSTMState(State):
    """Matrix memory C (B, NH, DHQK, DHV), normaliser n (B, NH, DHQK), stabiliser m (B, NH, 1).

    C and n hold k unscaled (q is scaled by DHQK^-1/2), as in mlstm_kernels and transformers.
    """

    c: torch.Tensor
    n: torch.Tensor
    m: torch.Tensor


@dataclass
class SLSTMState(State):
    """Cell c, normaliser n, previous output h and stabiliser m, each (B, NH, DH)."""

    c: torch.Tensor
    n: torch.Tensor
    h: torch.Tensor
    m: torch.Tensor


@dataclass
class LayerState(State):
    """A NeurIPS layer's cell state plus the causal-conv history: the last K-1 inputs (B, K-1, F)."""

    cell: State
    conv: Optional[torch.Tensor] = None


@dataclass
class LMState(State):
    """One state per block, in block order."""

    blocks: list


class LMOutput(NamedTuple):
    logits: torch.Tensor
    """(B, S, vocab) in float32."""
    state: LMState


def run_blocks(blocks, x: torch.Tensor, state: Optional[LMState]):
    """Thread x through the blocks, each with its own state; returns x and the new LMState."""
    states = []
    for j, block in enumerate(blocks):
        x, block_state = block(x, None if state is None else state.blocks[j])
        states.append(block_state)
    return x, LMState(states)


class _HandOver(list):
    """Block states read once: the list drops each when its block takes it, so the old and new states
    of a whole model are never alive together (one block's pair at a time)."""

    def __getitem__(self, j):
        value = super().__getitem__(j)
        self[j] = None
        return value


def lm_forward(hidden: Callable, head: Callable, input_ids: torch.Tensor, state: Optional[LMState],
               logits_to_keep: int, piece: int) -> LMOutput:
    """An LM forward: `hidden(ids, state) -> (x, state)`, then `head(x) -> logits` for the last
    `logits_to_keep` positions (0: all). Without autograd the input runs in pieces of `piece` tokens
    (over all rows: piece / B positions), the state carried between them: activations of one piece at a time, the same result (a recurrent
    model's whole history is its state). Positions no logits are asked for never reach the head."""
    B, S = input_ids.shape
    keep = S if not logits_to_keep else min(logits_to_keep, S)
    step = max(1, piece // max(B, 1))  # `piece` tokens in all: B rows of piece / B positions
    step = step if not torch.is_grad_enabled() and S > step else max(S, 1)
    logits = []
    for start in range(0, max(S, 1), step):
        if start:  # the previous piece's state is ours: each block drops its old state as it takes it
            state = LMState(_HandOver(state.blocks))
        x, state = hidden(input_ids[:, start:start + step], state)
        wanted = min(x.shape[1], start + x.shape[1] - (S - keep))  # this piece's positions among the kept
        if wanted > 0 or not S:
            logits.append(head(x[:, x.shape[1] - max(wanted, 0):]))
    return LMOutput(logits[0] if len(logits) == 1 else torch.cat(logits, 1), state)
