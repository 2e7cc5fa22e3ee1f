"""Evaluation: validation metrics on a task's held-out batches, as the task's kind defines them (loss and accuracy
by default), and the stateful perplexity of any documents."""

from __future__ import annotations

import math
import time

import torch

from ..data import Task
from ..scoring import prefix_token, score_documents


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


def perplexity(model: torch.nn.Module, tokenizer, documents: list[str], batch_size: int = 8,
               chunk: int = 1024) -> dict[str, float]:
    """Stateful perplexity: each document scored whole in one pass (no windows, nothing recomputed), its first
    token conditioned on the model's BOS/EOS (scoring.prefix_token; without one the first token is not scored).
    loss is nats per scored token; bits_per_byte divides the total by the documents' UTF-8 bytes."""
    prefix = prefix_token(model.config, tokenizer)
    sequences = [([] if prefix is None else [prefix]) + tokenizer.encode(d) for d in documents]
    start = time.perf_counter()
    totals = score_documents(model, sequences, batch_size, chunk)
    seconds = time.perf_counter() - start
    tokens = sum(max(len(s) - 1, 0) for s in sequences)
    if tokens == 0:
        raise ValueError("perplexity: the documents hold no token to score")
    nats = -sum(totals)
    return {"documents": len(documents), "tokens": tokens, "loss": nats / tokens, "perplexity": math.exp(nats / tokens),
            "bits_per_byte": nats / math.log(2) / sum(len(d.encode("utf-8")) for d in documents),
            "tokens_per_s": tokens / seconds}
