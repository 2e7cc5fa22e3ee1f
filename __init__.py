"""xlstm-zoo: a declarative model zoo for the xLSTM architecture.

    from xlstm_zoo import build_model, get_config, get_entry, list_models, save_pretrained
    model = build_model("xlstm-125m")

Importing this package and listing entries never imports torch: the API is loaded on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "build_model": "registry.builder",
    "get_config": "registry.index",
    "get_entry": "registry.index",
    "list_models": "registry.index",
    "save_pretrained": "registry.checkpoints",
    "load_checkpoint": "registry.checkpoints",
    "param_groups": "xlstm.optim",
    "MLSTM": "xlstm.sequence",
    "SLSTM": "xlstm.sequence",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
