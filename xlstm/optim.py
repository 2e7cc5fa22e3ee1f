"""Optimizer parameter groups from a model config's weight-decay rules."""

from __future__ import annotations

import fnmatch

from torch import nn


def decays(name: str, rules) -> bool:
    """Whether the parameter `name` is decayed: the last matching rule decides; no match, no decay."""
    verdict = False
    for rule in rules:
        if fnmatch.fnmatchcase(name, rule.params):
            verdict = rule.decay
    return verdict


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups (decayed, not decayed) from `model.config.decay_rules()`; frozen parameters are left out.

        torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    """
    rules = model.config.decay_rules()
    groups = {True: ([], []), False: ([], [])}
    for name, param in model.named_parameters():
        if param.requires_grad:
            params, names = groups[decays(name, rules)]
            params.append(param)
            names.append(name)
    return [
        {"params": groups[True][0], "param_names": groups[True][1], "weight_decay": weight_decay},
        {"params": groups[False][0], "param_names": groups[False][1], "weight_decay": 0.0},
    ]
