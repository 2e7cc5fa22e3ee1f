"""From a validated config to an initialised nn.Module: the one place models are made (no checkpoints)."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from ..xlstm import MODEL_CLASSES, apply_init, set_weight_mode


def instantiate(config, *, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> nn.Module:
    """The model a validated config describes, initialised by its init rules (not on `meta`).

    Fused xLSTM Large weights are initialised in the single layout, then stacked: the rules address
    q, k, v, the output gate and each gate's bias by name, and both modes start from the same values.
    """
    fused = getattr(config, "weight_mode", None) == "fused"
    layout = config.model_copy(update={"weight_mode": "single"}) if fused else config
    with torch.device(device or "cpu"):
        model = MODEL_CLASSES[config.kind](layout)
    apply_init(model, layout.init_rules(), layout)
    if fused:
        set_weight_mode(model, "fused")
    return model if dtype is None else model.to(dtype)
