"""Checks of what callers pass to `forward` and `generate`: a wrong argument is a ValueError or TypeError
naming it, raised before any kernel runs (a token id past the vocabulary would otherwise index past the
embedding: on CUDA a device-side assert that poisons the process).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

import torch

from .state import LMState

_TRUSTED_IDS = contextvars.ContextVar("xlstm_zoo_trusted_ids", default=False)


@contextlib.contextmanager
def trusted_ids():
    """Ids the caller made or already checked (generation's decode steps: the model's own tokens): skip the
    range check, which reads the ids back to the host (on CUDA a sync, stalling the queue of GPU work)."""
    token = _TRUSTED_IDS.set(True)
    try:
        yield
    finally:
        _TRUSTED_IDS.reset(token)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_input_ids(model: torch.nn.Module, input_ids, name: str = "input_ids") -> None:
    """A (batch, length) integer tensor of at least one token, on the model's device, ids in the vocabulary."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dtype not in (torch.long, torch.int32):  # what an embedding lookup takes
        raise TypeError(f"{name}: expected a torch.long or torch.int32 tensor, got {input_ids.dtype}")
    if input_ids.dim() != 2 or input_ids.numel() == 0:
        raise ValueError(f"{name}: expected shape (batch, length) with at least one token, got {tuple(input_ids.shape)}")
    device = _device(model)
    if input_ids.device != device:
        raise ValueError(f"{name}: expected a tensor on the model's device {device}, got {input_ids.device}")
    if _TRUSTED_IDS.get() or device.type == "meta" or torch.compiler.is_compiling() or (
            device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        return
    lo, hi = (int(v) for v in torch.aminmax(input_ids))
    vocab = model.config.vocab_size
    if lo < 0 or hi >= vocab:
        raise ValueError(f"{name}: expected token ids in [0, {vocab - 1}] (vocab_size {vocab}), got "
                         f"{lo if lo < 0 else hi}")


def _state_shapes(config) -> Optional[list[list[tuple]]]:
    """Per block, the shapes (without the batch dim) of its state tensors in `State.tensors()` order."""
    if config.kind == "xlstm-large-lm":
        nh = config.num_heads
        dqk, dv = config.qk_dim // nh, config.v_dim // nh
        return [[(nh, dqk, dv), (nh, dqk), (nh, 1)]] * config.num_blocks
    if config.kind != "xlstm-lm":
        return None
    shapes = []
    for block in config.block_configs():
        if block.kind == "mlstm-block":
            inner, nh, k = block.mlstm.proj_up_dim(config.embedding_dim), block.mlstm.num_heads, block.mlstm.conv1d_kernel_size
            shapes.append([(nh, inner // nh, inner // nh), (nh, inner // nh), (nh, 1), (k - 1, inner)])
        else:
            nh, k = block.slstm.num_heads, block.slstm.conv1d_kernel_size
            head = (nh, config.embedding_dim // nh)
            shapes.append([head] * 4 + ([(k - 1, config.embedding_dim)] if k else []))
    return shapes


def check_state(model: torch.nn.Module, state, batch: int) -> None:
    """None, or an LMState this model returned for `batch` rows (not another model's, not another batch's)."""
    if state is None:
        return
    if not isinstance(state, LMState):
        raise TypeError(f"state: expected None or the LMState a previous call returned, got {type(state).__name__}")
    expected = _state_shapes(model.config)
    if expected is not None and len(state.blocks) != len(expected):
        raise ValueError(f"state: expected the state of a model with {len(expected)} blocks, got {len(state.blocks)}")
    device = _device(model)
    for j, block in enumerate(state.blocks):
        tensors = block.tensors() if hasattr(block, "tensors") else None
        if tensors is None:
            raise TypeError(f"state.blocks[{j}]: expected a block state, got {type(block).__name__}")
        got = [tuple(t.shape[1:]) for t in tensors]
        if expected is not None and got != expected[j]:
            raise ValueError(f"state.blocks[{j}]: expected tensors of shapes (batch, ...) {expected[j]}, got {got}: "
                             "a state from another model?")
        for t in tensors:
            if t.shape[0] != batch:
                raise ValueError(f"state.blocks[{j}]: expected batch size {batch} (that of input_ids), got {t.shape[0]}")
            if t.device != device:
                raise ValueError(f"state.blocks[{j}]: expected tensors on the model's device {device}, got {t.device}")


def check_forward(model: torch.nn.Module, input_ids, state, logits_to_keep: int = 0) -> None:
    check_input_ids(model, input_ids)
    check_state(model, state, input_ids.shape[0])
    if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
        raise ValueError(f"logits_to_keep: expected an integer >= 0 (0: all positions), got {logits_to_keep!r}")


def _integer(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected >= {low}, got {value}")


def check_generate(model: torch.nn.Module, input_ids, max_new_tokens, *, do_sample, temperature, top_k, top_p,
                   eos_token_id, attention_mask) -> None:
    """generate's arguments; top_k above the vocabulary keeps every token (as no top_k)."""
    check_input_ids(model, input_ids)
    _integer("max_new_tokens", max_new_tokens, 0)
    if not isinstance(do_sample, bool):
        raise TypeError(f"do_sample: expected true or false, got {type(do_sample).__name__}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0 (for greedy decoding use do_sample=False), "
                         f"got {temperature!r}")
    if top_k is not None:
        _integer("top_k", top_k, 1)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p: expected a number in (0, 1], got {top_p!r}")
    if eos_token_id is not None:
        _integer("eos_token_id", eos_token_id, 0)
        if eos_token_id >= model.config.vocab_size:
            raise ValueError(f"eos_token_id: expected a token id below vocab_size {model.config.vocab_size}, "
                             f"got {eos_token_id}")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask: expected a tensor of the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(getattr(attention_mask, 'shape', ())) or type(attention_mask).__name__}")
        if attention_mask.device != input_ids.device:
            raise ValueError(f"attention_mask: expected a tensor on {input_ids.device}, got {attention_mask.device}")
        if attention_mask.is_floating_point() or not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask: expected 0 (pad) and 1 (token) integers or booleans")
