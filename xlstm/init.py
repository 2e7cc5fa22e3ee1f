"""Apply a config's init rules (schemas/init.py) to a built model: for each parameter the last matching
rule's scheme. Parameters on the meta device are skipped (nothing to fill)."""

from __future__ import annotations

import fnmatch
import math
import re

import torch
from torch import nn

from ..schemas.init import InitRule

GATES = "ifzo"


def _block_index(name: str) -> int:
    match = re.search(r"blocks\.(\d+)\.", name)
    return int(match.group(1)) if match else 0


def _fill(param: torch.Tensor, scheme, name: str, config) -> None:
    kind = scheme.kind
    if kind == "torch_default":
        return
    if kind == "small_init":
        nn.init.normal_(param, std=math.sqrt(2 / (5 * (scheme.dim or config.embedding_dim))))
    elif kind == "wang_init":
        dim, blocks = scheme.dim or config.embedding_dim, scheme.num_blocks or config.num_blocks
        nn.init.normal_(param, std=2 / blocks / math.sqrt(dim))
    elif kind == "normal":
        nn.init.normal_(param, mean=scheme.mean, std=scheme.std)
    elif kind == "trunc_normal":
        nn.init.trunc_normal_(param, mean=scheme.mean, std=scheme.std, a=scheme.mean - 2, b=scheme.mean + 2)
    elif kind == "xavier_uniform":
        nn.init.xavier_uniform_(param.view(param.shape[0], -1))
    elif kind == "uniform":
        nn.init.uniform_(param, scheme.low, scheme.high)
    elif kind in ("constant", "zeros", "ones"):
        nn.init.constant_(param, {"zeros": 0.0, "ones": 1.0}.get(kind, getattr(scheme, "value", 0.0)))
    elif kind == "bias_linspace" and scheme.gate is None:
        param.copy_(torch.linspace(scheme.start, scheme.end, param.numel()).view_as(param))
    elif kind == "bias_linspace":
        _gate_bias(param, name, scheme.gate, torch.linspace(scheme.start, scheme.end, param.shape[-1]))
    elif kind == "powerlaw_blockdependent":
        dh = param.shape[-1]
        r = _block_index(name) / (config.num_blocks - 1) if config.num_blocks > 1 else 0.0
        ramp = -(-5.0 + 12.0 * (torch.arange(dh, dtype=torch.float64) / (dh - 1)) ** (0.3 + 1.3 * r))
        _gate_bias(param, name, "f", ramp.float())
    else:  # pragma: no cover - the schema admits no other kind
        raise ValueError(f"unknown init scheme {kind!r}")


def _gate_bias(param: torch.Tensor, name: str, gate: str, ramp: torch.Tensor) -> None:
    """Gate-structured sLSTM bias (NH, 4, DH): `ramp` over each head's units of one gate, zeros elsewhere."""
    if param.dim() != 3 or param.shape[1] != 4:
        raise ValueError(f"init of {name}: a per-gate scheme needs an sLSTM bias of shape (NH, 4, DH), "
                         f"got {tuple(param.shape)}")
    param.zero_()
    param[:, GATES.index(gate), :] = ramp


@torch.no_grad()
def apply_init(model: nn.Module, rules: list[InitRule], config) -> None:
    for name, param in model.named_parameters():
        if param.is_meta:
            continue
        matching = [r for r in rules if fnmatch.fnmatchcase(name, r.params)]
        if matching:
            _fill(param, matching[-1].init, name, config)
