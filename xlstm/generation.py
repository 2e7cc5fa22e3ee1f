"""Autoregressive generation for both xLSTM families: prefill once, then one step per token.

The recurrent state (mLSTM C, n, m; sLSTM c, n, h, m; conv history) is carried between calls, so a new
token costs the same at any position. Left padding is honoured exactly: rows are prefilled in groups of
equal prompt length (pad tokens never enter a state), then all rows step together. transformers' xLSTM
feeds the pads into the state instead, so its batched output depends on the padding.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Optional

import torch

from .arguments import check_generate, trusted_ids
from .backend import states_updated_in_place
from .cuda_graph import graph_decoder
from .state import State


def _scatter_state(full, rows: torch.Tensor, part, batch: int):
    """Write `part` (a state of len(rows) rows) into rows `rows` of `full` (allocated on first use, for
    `batch` rows): each group's state lands in the batch state as soon as it is made, never concatenated."""
    if isinstance(part, torch.Tensor):
        if full is None:
            full = part.new_empty(batch, *part.shape[1:])
        full[rows] = part
        return full
    if isinstance(part, State):
        return dataclasses.replace(part, **{f.name: _scatter_state(None if full is None else getattr(full, f.name),
                                                                   rows, getattr(part, f.name), batch)
                                            for f in dataclasses.fields(part)})
    if isinstance(part, (list, tuple)):
        return type(part)(_scatter_state(None if full is None else whole, rows, piece, batch)
                          for whole, piece in zip(full or [None] * len(part), part))
    return part  # None and other non-tensor leaves are shared


def _last_logits(model, input_ids: torch.Tensor, state=None):
    """model(input_ids, state) for the last position's logits: models whose forward takes
    `logits_to_keep` compute only those (no lm_head / float32 logits over the whole prompt)."""
    try:
        keeps = "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        keeps = False
    return model(input_ids, state, logits_to_keep=1) if keeps else model(input_ids, state)


def _prefill(model, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]):
    """Logits of each row's last prompt token and the batch state, pads (mask 0, on the left) excluded."""
    if attention_mask is None:
        logits, state = _last_logits(model, input_ids)
        return logits[:, -1], state
    mask = attention_mask.bool()
    lengths = mask.sum(1)
    if not torch.equal(mask, torch.arange(mask.shape[1], device=mask.device) >= mask.shape[1] - lengths[:, None]):
        raise ValueError("attention_mask: expected left padding (each row's zeros before its ones)")
    if (lengths == 0).any():
        raise ValueError("attention_mask: every row needs at least one token")
    if bool(mask.all()):
        return _prefill(model, input_ids, None)
    last, state = None, None
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero().squeeze(1)
        logits, part = _last_logits(model, input_ids[rows, input_ids.shape[1] - length:])
        last = _scatter_state(last, rows, logits[:, -1], len(lengths))
        state = _scatter_state(state, rows, part, len(lengths))
        del part
    return last, state


def _sample(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: Optional[int],
            top_p: Optional[float], generator: Optional[torch.Generator]) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, index = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already hold top_p (the first always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.scatter(-1, index, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)


class _AllDone:
    """`done.all()` read back on the host without waiting for the work queued after it: on CUDA a copy to
    pinned memory and an event, so the next decode step is already running while the host checks."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.host = torch.empty((), dtype=torch.bool, pin_memory=True)
            self.event = torch.cuda.Event()

    def read(self, done: torch.Tensor) -> None:
        if self.cuda:
            self.host.copy_(done.all(), non_blocking=True)
            self.event.record()
        else:
            self.host = done.all()

    def value(self) -> bool:
        if self.cuda:
            self.event.synchronize()
        return bool(self.host)


def _eager_decoder(model, state):
    """token (B,) -> last logits (B, vocab), carrying the state: one eager forward per token. The state
    is generate's own, so its mLSTM C is updated where it lies (no second copy per step)."""

    def step(token):
        nonlocal state
        with states_updated_in_place(), trusted_ids():
            logits, state = model(token[:, None], state)
        return logits[:, -1]
    return step


def _use_graph(model, input_ids: torch.Tensor, cuda_graph: Optional[bool]) -> bool:
    """By default on CUDA for models whose single tokens go through the step kernel (inference mode)."""
    if cuda_graph is not None:
        return cuda_graph
    kernels = getattr(model.config, "kernels", None)
    return input_ids.is_cuda and getattr(kernels, "mode", None) == "inference"


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int, do_sample: bool = False,
             temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
             eos_token_id: Optional[int] = None, attention_mask: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None, cuda_graph: Optional[bool] = None) -> torch.Tensor:
    """Prompt + up to `max_new_tokens` tokens, (B, S + n), as transformers' generate returns.

    Greedy unless `do_sample`. Rows that produced `eos_token_id` (default: the config's) are filled with
    it; generation stops early once every row has. `attention_mask` marks left padding (0 = pad).
    `cuda_graph`: decode steps replayed from a captured graph (xlstm/cuda_graph.py); default on CUDA in
    inference mode.
    """
    if eos_token_id is None:
        eos_token_id = model.config.eos_token_id
    check_generate(model, input_ids, max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k,
                   top_p=top_p, eos_token_id=eos_token_id, attention_mask=attention_mask)
    logits, state = _prefill(model, input_ids, attention_mask)
    # The decoder takes the state over (the graph runner adopts its tensors or copies them into its own
    # buffers, releasing each block's): about one copy of the state is alive from here on.
    decode = graph_decoder(model, state) if _use_graph(model, input_ids, cuda_graph) else _eager_decoder(model, state)
    del state
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    finished = _AllDone(done.device)
    tokens = []
    for step in range(max_new_tokens):
        token = _sample(logits.float(), do_sample, temperature, top_k, top_p, generator)
        if eos_token_id is not None:
            token = token.masked_fill(done, eos_token_id)
            done |= token == eos_token_id
            finished.read(done)
        tokens.append(token)
        if step == max_new_tokens - 1:
            break
        logits = decode(token)  # queued before the host looks at `done`: the GPU never waits for that check
        if eos_token_id is not None and finished.value():
            break
    return torch.cat([input_ids, torch.stack(tokens, 1)], 1) if tokens else input_ids


class GenerationMixin:
    """Gives an LM `generate(...)` over its own `forward(input_ids, state) -> (logits, state)`."""

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return generate(self, input_ids, max_new_tokens, **kwargs)
        finally:
            self.train(was_training)
