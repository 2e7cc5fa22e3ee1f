"""NX-AI TiRex checkpoints (`model.ckpt` of the NX-AI/TiRex repository) -> our `tirex` config and state.

The file is a Lightning checkpoint made of plain containers and tensors, so it loads with
`torch.load(weights_only=True)` (nothing is unpickled). Its `hyper_parameters` hold TiRexZero's constructor
arguments: `model_config` (patch sizes, quantiles, `block_kwargs`, `input_ff_dim`) and `train_ctx_len`.
TiRex itself keeps only the `block_kwargs` its block config knows (embedding_dim, num_heads, num_blocks,
ffn_proj_factor, num_states, num_gates) and ignores any other; so do we. Any other unknown key is an error.

State names are ours except: a `block_stack.` prefix older checkpoints carry (TiRex strips it on load),
and the sLSTM cell's `_recurrent_kernel_` (NH, DH, 4 DH) and `_bias_` (NH 4 DH), stored in the head-major
layout of NX-AI's CUDA sLSTM kernel, which TiRex's torch backend reads as well.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import torch

from ...schemas.forecast import TiRexConfig
from .hf import ConfigMappingError
from .nxai import _slstm_from_stored
from .store import CheckpointError

MODEL_CONFIG_FIELDS = {"input_patch_size", "output_patch_size", "quantiles", "block_kwargs", "input_ff_dim",
                       "nan_mask_value"}
BLOCK_FIELDS = {"embedding_dim", "num_blocks", "ffn_proj_factor"}


def from_tirex_hparams(hparams: Any, source: str = "hyper_parameters") -> TiRexConfig:
    """Our config from a TiRex checkpoint's `hyper_parameters`."""
    if not isinstance(hparams, dict) or not isinstance(hparams.get("model_config"), dict):
        raise ConfigMappingError(f"{source}: expected a mapping with a `model_config` mapping (TiRexZero's arguments)")
    model = hparams["model_config"]
    unknown = sorted(set(model) - MODEL_CONFIG_FIELDS)
    if unknown:
        raise ConfigMappingError(f"{source}.model_config: keys not understood: {', '.join(unknown)}")
    blocks = model.get("block_kwargs")
    if not isinstance(blocks, dict):
        raise ConfigMappingError(f"{source}.model_config.block_kwargs: expected a mapping, got {type(blocks).__name__}")
    for key in ("num_states", "num_gates"):
        if blocks.get(key, 4) != 4:
            raise ConfigMappingError(f"{source}.model_config.block_kwargs.{key}: the sLSTM has 4, got {blocks[key]}")
    missing = [f"model_config.{k}" for k in ("input_patch_size", "output_patch_size", "quantiles", "input_ff_dim")
               if k not in model]
    missing += [f"model_config.block_kwargs.{k}" for k in ("embedding_dim", "num_heads", "num_blocks") if k not in blocks]
    missing += [] if "train_ctx_len" in hparams else ["train_ctx_len"]
    if missing:
        raise ConfigMappingError(f"{source}: missing {', '.join(missing)}")
    fields = {k: model[k] for k in MODEL_CONFIG_FIELDS - {"block_kwargs"} if k in model}
    fields.update({k: blocks[k] for k in BLOCK_FIELDS if k in blocks})
    fields["quantiles"] = [float(q) for q in fields["quantiles"]]
    try:
        return TiRexConfig(**fields, slstm={"num_heads": blocks["num_heads"]}, context_length=hparams["train_ctx_len"],
                           horizon=model["output_patch_size"])
    except ValueError as exc:
        raise ConfigMappingError(f"{source}: {exc}") from None


def convert_tirex_state(state: dict, config: TiRexConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """TiRex state_dict items -> ours (the sLSTM cell's tensors in our (NH, DH, 4, DH) / (NH, 4, DH) views)."""
    for name, tensor in state.items():
        name = name.removeprefix("block_stack.")
        stem, _, leaf = name.rpartition(".")
        if leaf in ("_recurrent_kernel_", "_bias_") and stem.endswith("slstm_cell"):
            tensor = _slstm_from_stored(name, tensor, "cuda", config.slstm.num_heads)
            name = f"{stem}.{leaf.strip('_')}"
        yield name, tensor


def load_refusal(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one sentence: its unpickler's reason, without
    the advice around it (to load with weights_only=False, or to allowlist the class: both run pickled code)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    _, marker, reason = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (reason if marker else text).splitlines() if line.strip()]
    return lines[0].split(". ", 1)[0].rstrip(".") if lines else type(exc).__name__


def read_tirex_checkpoint(path: Path) -> tuple[TiRexConfig, dict]:
    """Config and raw state_dict of a TiRex `model.ckpt`, read without unpickling."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad or unsafe file
        raise CheckpointError(f"{path}: not a TiRex checkpoint readable with torch.load(weights_only=True) "
                              f"({load_refusal(exc)}); pickled code is never run") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict) \
            or "hyper_parameters" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: expected a Lightning checkpoint with `state_dict` and `hyper_parameters`, "
                              f"got {keys}")
    return from_tirex_hparams(checkpoint["hyper_parameters"], f"{path}: hyper_parameters"), checkpoint["state_dict"]
