"""Validation metrics: the task's own (`batch_stats` / `metrics`, e.g. forecast errors) or, for token tasks,
loss and accuracy over the positions that carry targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import IGNORE, Task


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, batch_size: int, max_batches: int | None,
             device: torch.device, precision: str) -> dict[str, float]:
    """Every process evaluates the whole set, so the numbers do not depend on the number of processes.

    `scaled_accuracy` maps chance to 0 and perfect to 1, as the xLSTM paper reports formal-language results.
    A task with `batch_stats(output, targets)` (sums over one batch of the model's outputs) and
    `metrics(totals)` (numbers from their totals) defines its own metrics; names get a `val_` prefix."""
    was_training = model.training
    model.eval()
    if hasattr(task, "batch_stats"):
        totals: dict[str, float] = {}
        for i, batch in enumerate(task.eval_batches(batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            with autocast(device, precision):
                output = model(batch.inputs.to(device))
            for name, value in task.batch_stats(output, batch.targets.to(device)).items():
                totals[name] = totals.get(name, 0.0) + value
        model.train(was_training)
        return {f"val_{name}": value for name, value in task.metrics(totals).items()}
    loss, correct, count = 0.0, 0, 0
    for i, batch in enumerate(task.eval_batches(batch_size)):
        if max_batches is not None and i >= max_batches:
            break
        with autocast(device, precision):
            logits = model(batch.inputs.to(device)).logits
        targets = batch.targets.to(device)
        mask = targets != IGNORE
        picked = logits[mask].float()
        loss += F.cross_entropy(picked, targets[mask], reduction="sum").item()
        correct += (picked.argmax(-1) == targets[mask]).sum().item()
        count += mask.sum().item()
    model.train(was_training)
    metrics = {"val_loss": loss / count, "val_accuracy": correct / count}
    if task.chance is not None:
        metrics["val_scaled_accuracy"] = (metrics["val_accuracy"] - task.chance) / (1 - task.chance)
    return metrics


def autocast(device: torch.device, precision: str):
    """bf16 autocast with fp32 weights, or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
