"""Validation metrics on a task's held-out batches, as the task's kind defines them (loss and accuracy by default)."""

from __future__ import annotations

import torch

from ..data import Task


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, batch_size: int, max_batches: int | None,
             device: torch.device, precision: str) -> dict[str, float]:
    """Every process evaluates the whole set, so the numbers do not depend on the number of processes.
    Metric names get a `val_` prefix."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for i, batch in enumerate(task.eval_batches(batch_size)):
        if max_batches is not None and i >= max_batches:
            break
        with autocast(device, precision):
            output = model(batch.inputs.to(device))
        for name, value in task.batch_stats(output, batch.targets.to(device)).items():
            totals[name] = totals.get(name, 0.0) + value
    metrics = {**task.metrics(totals), **task.model_metrics(model, device)}
    model.train(was_training)
    return {f"val_{name}": value for name, value in metrics.items()}


def autocast(device: torch.device, precision: str):
    """bf16 autocast with fp32 weights, or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
