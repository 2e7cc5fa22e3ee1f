"""NX-AI/vision-lstm checkpoints: the published torch-hub files (`{"state_dict": ...}` with training-side names).

hubconf.py's "v2" preprocessing renames them to VisionLSTM2's names, which are ours; the architecture is read
off the tensor shapes, so `xlstm-zoo convert --from vil` needs no config. Files are resolved offline from the
torch hub cache (`$TORCH_HOME/hub/checkpoints/`) and read with torch.load(weights_only=True) only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ...schemas.vision import ViLConfig
from ..factory import instantiate
from .store import CheckpointError, _read_pickle_free, load_tensors, sha256_file

TORCH_HUB = "torch-hub:"
DIRECTIONS = ("rowwise_from_top_left", "rowwise_from_bot_right")


def torch_hub_checkpoints() -> Path:
    """Where torch.hub keeps downloaded checkpoints: $TORCH_HOME/hub/checkpoints (as torch.hub.get_dir())."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def resolve_torch_hub(source: str) -> Path:
    """`torch-hub:FILE` -> the cached file; a miss names the file and the folder looked in."""
    name = source[len(TORCH_HUB):]
    path = torch_hub_checkpoints() / name
    if not path.is_file():
        raise CheckpointError(f"{source}: {name} is not in the torch hub cache (read offline): looked in "
                              f"{path.parent}. Put the file there (or set TORCH_HOME to the folder holding "
                              "hub/checkpoints/ with it)")
    return path


def _rename(name: str) -> str:
    """One training-side name -> VisionLSTM2's (hubconf.py "v2"): xlstm -> layer, block 2j / 2j+1 -> pair j's
    two directions, post_blocks_norm -> norm, head.0 -> legacy_norm, head.1 -> head."""
    name = name.replace(".xlstm.", ".layer.").replace("xlstm.", "")
    name = name.replace(".xlstm_norm.", ".norm.").replace(".conv1d.", ".conv.")
    block = re.match(r"blocks\.(\d+)\.(.*)", name)
    if block:
        index = int(block.group(1))
        return f"blocks.{index // 2}.{DIRECTIONS[index % 2]}.{block.group(2)}"
    for old, new in (("post_blocks_norm.", "norm."), ("head.0.", "legacy_norm."), ("head.1.", "head.")):
        if name.startswith(old):
            return new + name[len(old):]
    return name


def vil_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names for a ViL state_dict in the training-side layout (already-converted names pass through)."""
    if "post_blocks_norm.weight" not in state:
        return dict(state)
    return {_rename(name): tensor for name, tensor in state.items()}


def infer_vil_config(state: dict[str, torch.Tensor], source: str = "checkpoint") -> ViLConfig:
    """The ViLConfig whose parameters have these shapes (names as vil_state gives them)."""

    def get(name: str) -> torch.Tensor:
        if name not in state:
            raise CheckpointError(f"{source}: not a Vision-LSTM (VisionLSTM2) checkpoint: no tensor {name!r}")
        return state[name]

    dim, channels, patch, _ = get("patch_embed.proj.weight").shape
    _, rows, cols, _ = get("pos_embed.embed").shape
    layer = f"blocks.0.{DIRECTIONS[0]}.layer"
    inner = get(f"{layer}.learnable_skip").numel()
    conv = state.get(f"{layer}.conv.weight", state.get(f"{layer}.conv.conv.weight"))
    if conv is None:
        raise CheckpointError(f"{source}: no convolution at {layer}.conv.weight or {layer}.conv.conv.weight")
    classes, features = get("head.weight").shape
    pairs = {int(m.group(1)) for name in state if (m := re.match(r"blocks\.(\d+)\.", name))}
    return ViLConfig(
        dim=dim, depth=len(pairs), patch_size=patch, image_shape=(channels, rows * patch, cols * patch),
        num_classes=classes, pooling="bilateral_flatten" if features == 2 * dim else "bilateral_avg",
        legacy_norm="legacy_norm.weight" in state, expansion=inner // dim,
        qkv_block_size=get(f"{layer}.q_proj.weight").shape[-1],
        num_heads=get(f"{layer}.mlstm_cell.igate.weight").shape[0],
        conv_kind="2d" if conv.dim() == 4 else "causal1d", conv_kernel_size=conv.shape[-1],
        proj_bias=f"{layer}.proj_up.bias" in state, norm_bias=f"blocks.0.{DIRECTIONS[0]}.norm.bias" in state,
    )


def read_vil(path: Path, sha256: Optional[str] = None) -> dict[str, torch.Tensor]:
    if sha256 is not None and sha256_file(path) != sha256:
        raise CheckpointError(f"{path}: sha256 mismatch (expected {sha256}); the file is corrupted or was replaced")
    return vil_state(_read_pickle_free(path))


def load_vil(config: ViLConfig, state: dict[str, torch.Tensor], *, source: str, device=None, dtype=None) -> nn.Module:
    """`config`'s model filled from a converted state, strictly (every name, every shape)."""
    model = instantiate(config, device="meta", dtype=dtype or torch.float32)
    load_tensors(model, state.items(), strict=True, device=device, source=source)
    return model.eval()


def load_torch_hub(config, weights, *, device=None, dtype=None) -> nn.Module:
    """A zoo entry's model with weights from a `torch-hub:FILE` source (a published ViL checkpoint)."""
    if config.kind != "vil":
        raise CheckpointError(f"{weights.source}: torch-hub weights are Vision-LSTM checkpoints, "
                              f"not for a model of kind {config.kind}")
    path = resolve_torch_hub(weights.source)
    state = read_vil(path, weights.files.get(path.name))
    return load_vil(config, state, source=str(path), device=device, dtype=dtype)
