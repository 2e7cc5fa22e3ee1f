"""From a validated config to an initialised nn.Module: the one place models are made (no checkpoints)."""

from __future__ import annotations

import os
from typing import Optional, Union

import torch
from torch import nn

from ..schemas.kernels import DTYPES
from ..xlstm import MODEL_CLASSES, apply_init, set_weight_mode


def parse_dtype(dtype: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    """A dtype by name; None or `auto` keeps the stored one."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return None if dtype == "auto" else dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected auto or one of {', '.join(DTYPES)}, got {dtype!r}")
    return getattr(torch, dtype)


class ModelTooLargeError(ValueError):
    """The weights a config describes do not fit the memory of the device they are to be built on."""


def _device_memory(device: torch.device) -> Optional[int]:
    """Bytes the device can hold: free memory of a GPU (with what torch's allocator holds in its cache), the
    physical memory of the host; None if unknown."""
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    if device.type == "cpu" and hasattr(os, "sysconf"):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def check_fits(model: nn.Module, device: Union[str, torch.device, None], dtype: Optional[torch.dtype]) -> None:
    """Refuse to allocate `model` (built on meta, so this costs nothing) where its tensors cannot fit.

    Schema bounds refuse absurd sizes at their key; this catches the sizes each within bounds whose
    product is still far beyond the device, before a build that would swap or be killed.
    """
    device = torch.device(device or "cpu")
    memory = None if device.type == "meta" else _device_memory(device)
    if memory is None:
        return
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    count = sum(t.numel() for t in model.parameters())
    size = sum(t.numel() * (t.element_size() if dtype is None or not t.is_floating_point()
                            else torch.empty((), dtype=dtype).element_size()) for t in tensors)
    if size > memory:
        name = str(dtype or torch.get_default_dtype()).removeprefix("torch.")
        raise ModelTooLargeError(f"this config has {count:.3g} parameters ({size:.3g} bytes in {name}); the device "
                                 f"{device} has {memory / 2**30:.3g} GiB (build it on device='meta' to inspect it)")


def instantiate(config, *, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> nn.Module:
    """The model a validated config describes, initialised by its init rules (not on `meta`).

    It is first built on `meta` to check that it fits the device (check_fits). Fused xLSTM Large weights
    are initialised in the single layout, then stacked: the rules address q, k, v, the output gate and
    each gate's bias by name, and both modes start from the same values.
    """
    fused = getattr(config, "weight_mode", None) == "fused"
    layout = config.model_copy(update={"weight_mode": "single"}) if fused else config
    if torch.device(device or "cpu").type != "meta":
        with torch.device("meta"):
            check_fits(MODEL_CLASSES[config.kind](layout), device, dtype)
    with torch.device(device or "cpu"):
        model = MODEL_CLASSES[config.kind](layout)
    apply_init(model, layout.init_rules(), layout)
    if fused:
        set_weight_mode(model, "fused")
    return model if dtype is None else model.to(dtype)
