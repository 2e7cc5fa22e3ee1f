"""NX-AI `xlstm` (NeurIPS xLSTMLMModel) config and state_dict -> our `xlstm-lm` config and state.

Their config is a tree of dataclasses, written as YAML in the form of their README. Each of their
fields is either mapped onto ours, or dropped because it is derived, overwritten by their block stack,
or a CUDA build knob; any other key is an error, so nothing is lost silently.

Their state_dict names are ours except the sLSTM cell, which stores `_recurrent_kernel_` and `_bias_`
in a layout that depends on the backend it was made with (trap 17: the two flat bias layouts have the
same shape, so a wrong guess would load silently). We convert both through the external views
(NH, DH_in, 4, DH_out) and (NH, 4, DH), using the `backend` named in their config.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import torch

from ...schemas.errors import ConfigError, Problem
from ...schemas.models import XLSTMLMConfig
from ...schemas.yaml_io import Document, load_yaml, validate_document
from .hf import ConfigMappingError

LM_FIELDS = {"vocab_size", "embedding_dim", "num_blocks", "context_length", "tie_weights",
             "weight_decay_on_embedding", "add_embedding_dropout", "add_post_blocks_norm", "bias", "dropout",
             "slstm_at"}
MLSTM_FIELDS = {"conv1d_kernel_size", "qkv_proj_blocksize", "num_heads", "proj_factor", "round_proj_up_dim_up",
                "round_proj_up_to_multiple_of"}
SLSTM_FIELDS = {"num_heads", "conv1d_kernel_size", "bias_init", "recurrent_weight_init", "group_norm_weight",
                "function"}
FFN_FIELDS = {"proj_factor", "act_fn", "round_proj_up_dim_up", "round_proj_up_to_multiple_of"}
# Set from the block stack in NX-AI (their own values are overwritten) or derived there.
STACK_SET = {"embedding_dim", "bias", "dropout", "context_length", "hidden_size"}
# Compile-time and precision knobs of their CUDA sLSTM kernel; the math does not depend on them.
SLSTM_KNOBS = {"backend", "num_states", "num_gates", "batch_size", "input_shape", "internal_input_shape",
               "output_shape", "constants", "dtype", "dtype_b", "dtype_r", "dtype_w", "dtype_g", "dtype_s",
               "dtype_a", "enable_automatic_mixed_precision", "initial_val", "gradient_recurrent_cut",
               "gradient_recurrent_clipval", "forward_clipval"}
FFN_FIXED = {"ff_type": "ffn_gated", "bias": False, "dropout": 0.0}
"""FFN fields our schema has no place for; only NX-AI's defaults can be converted."""


def _section(data: Any, path: str, keep: set[str], drop: set[str]) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigMappingError(f"{path}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(k for k in data if k not in keep | drop and not k.startswith("_"))
    if unknown:
        raise ConfigMappingError(f"{path}: keys not understood: {', '.join(f'{path}.{k}' for k in unknown)}")
    return {k: v for k, v in data.items() if k in keep}


def slstm_backend(data: dict) -> str:
    """The sLSTM backend a NX-AI config names ('cuda' by default, as in their dataclass)."""
    backend = ((data.get("slstm_block") or {}).get("slstm") or {}).get("backend", "cuda")
    if backend not in ("cuda", "vanilla"):
        raise ConfigMappingError(f"slstm_block.slstm.backend: expected 'cuda' or 'vanilla', got {backend!r}")
    return backend


def from_nxai_config(data: dict) -> XLSTMLMConfig:
    """Our `xlstm-lm` config from NX-AI's xLSTMLMModelConfig as a dict (e.g. their README's YAML)."""
    fields = _section(data, "model", LM_FIELDS, {"mlstm_block", "slstm_block"})
    if fields.get("context_length", 0) <= 0:  # their placeholder -1; ours is informational
        fields.pop("context_length", None)
    if data.get("mlstm_block"):
        block = _section(data["mlstm_block"], "mlstm_block", {"mlstm"}, set())
        fields["mlstm_block"] = {"mlstm": _section(block.get("mlstm"), "mlstm_block.mlstm", MLSTM_FIELDS, STACK_SET)}
    else:
        fields["slstm_at"] = "all"  # as their stack config does when there is no mLSTM block
    if data.get("slstm_block"):
        block = _section(data["slstm_block"], "slstm_block", {"slstm", "feedforward"}, set())
        slstm = _section(block.get("slstm"), "slstm_block.slstm", SLSTM_FIELDS, STACK_SET | SLSTM_KNOBS)
        fields["slstm_block"] = {"slstm": slstm}
        if "feedforward" in block and block["feedforward"] is None:
            fields["slstm_block"]["feedforward"] = None
        else:
            ffn_data = block.get("feedforward") or {}
            ffn = _section(ffn_data, "slstm_block.feedforward", FFN_FIELDS, {"embedding_dim", *FFN_FIXED})
            for key, default in FFN_FIXED.items():
                if ffn_data.get(key, default) != default:
                    raise ConfigMappingError(f"slstm_block.feedforward.{key}: only {default!r} can be converted, "
                                             f"got {ffn_data[key]!r}")
            fields["slstm_block"]["feedforward"] = ffn
    return validate_document(XLSTMLMConfig, Document(fields, "config"))


def _slstm_from_stored(name: str, tensor: torch.Tensor, backend: str, num_heads: int) -> torch.Tensor:
    """An sLSTM `_recurrent_kernel_` / `_bias_` as stored by `backend`, in our (external) layout."""
    NH = num_heads
    if name.endswith("_recurrent_kernel_"):
        # vanilla: (NH, 4*DH_out, DH_in); cuda: (NH, DH_in, 4*DH_out)
        if tensor.dim() != 3 or tensor.shape[0] != NH or 4 * min(tensor.shape[1:]) != max(tensor.shape[1:]):
            raise ConfigMappingError(f"{name}: shape {tuple(tensor.shape)} is not an sLSTM recurrent kernel "
                                     f"with {NH} heads")
        DH = min(tensor.shape[1:])
        expected = (NH, 4 * DH, DH) if backend == "vanilla" else (NH, DH, 4 * DH)
        if tuple(tensor.shape) != expected:
            raise ConfigMappingError(f"{name}: shape {tuple(tensor.shape)} is the layout of the other sLSTM "
                                     f"backend, not of {backend!r} named in the config (expected {expected})")
        if backend == "vanilla":
            return tensor.reshape(NH, 4, DH, DH).permute(0, 3, 1, 2).contiguous()
        return tensor.reshape(NH, DH, 4, DH).contiguous()
    DH = tensor.numel() // (4 * NH)
    if backend == "vanilla":  # gate-major (4, NH, DH)
        return tensor.reshape(4, NH, DH).permute(1, 0, 2).contiguous()
    return tensor.reshape(NH, 4, DH).contiguous()  # cuda: head-major


def convert_nxai_state(tensors: Iterable[tuple[str, torch.Tensor]], config: XLSTMLMConfig,
                       backend: str) -> Iterator[tuple[str, torch.Tensor]]:
    """NX-AI xLSTMLMModel state_dict items -> ours (lazy: one tensor at a time)."""
    blocks = config.block_configs()
    for name, tensor in tensors:
        if config.tie_weights and name == "lm_head.weight":
            continue  # the same tensor as token_embedding.weight
        stem, _, leaf = name.rpartition(".")
        if leaf in ("_recurrent_kernel_", "_bias_") and stem.endswith("slstm_cell"):
            block = blocks[int(stem.split(".")[2])]  # xlstm_block_stack.blocks.{i}.xlstm.slstm_cell
            tensor = _slstm_from_stored(name, tensor, backend, block.slstm.num_heads)
            name = f"{stem}.{leaf.strip('_')}"
        yield name, tensor


def read_nxai_yaml(path) -> tuple[XLSTMLMConfig, str]:
    """Our config and the sLSTM backend from a NX-AI YAML config file (loaded safely: tags are refused)."""
    doc = load_yaml(path)
    data = json.loads(json.dumps(doc.data))  # ruamel containers -> plain data
    if not isinstance(data, dict):
        raise ConfigMappingError(f"{path}: expected a mapping of NX-AI xLSTMLMModelConfig fields")
    try:
        return from_nxai_config(data), slstm_backend(data)
    except ConfigError as exc:  # our keys are theirs: each problem is placed in their file
        raise ConfigError([Problem(*doc.locate(tuple(int(k) if k.isdigit() else k for k in p.path.split("."))),
                                   p.path, p.message) for p in exc.problems]) from None
    except ValueError as exc:  # our mapping errors
        raise ConfigMappingError(f"{path}: {exc}") from None
