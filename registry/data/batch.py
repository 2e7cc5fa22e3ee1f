"""The batch format shared by all tasks, and the interface the training loop relies on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100
"""Target value of positions that carry no loss (cross_entropy's default ignore_index)."""


class Batch(NamedTuple):
    inputs: torch.Tensor
    """(B, S) token ids, or (B, C, H, W) images."""
    targets: torch.Tensor
    """(B, S) next-token targets or (B,) classes, IGNORE where nothing is predicted."""

    def rows(self, start: int, stop: int) -> Batch:
        return Batch(self.inputs[start:stop], self.targets[start:stop])

    def shard(self, rank: int, world: int) -> Batch:
        """This process's contiguous share of a global batch."""
        size = self.inputs.shape[0] // world
        return self.rows(rank * size, (rank + 1) * size)


class Task:
    """What the training loop and evaluation ask of a data kind. The defaults are cross-entropy tasks whose
    targets are class ids (IGNORE where none): next-token prediction (B, S) and classification (B,) alike.

    A kind with other metrics overrides `batch_stats` / `metrics` (sums over the evaluation batches, then the
    numbers), or `model_metrics` for numbers computed from the model itself (e.g. scoring its samples)."""

    vocab_size: int | None = None
    """Number of token ids the task uses; the model's vocabulary must be at least this large."""
    chance: float | None = None
    """Accuracy of guessing (for scaled accuracy), None where it is not meaningful."""
    tokenizer = None
    """What turns text into the task's token ids (data.tokenizers), None where the data are not text; a run
    saves it with its model."""

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        raise NotImplementedError

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        raise NotImplementedError

    def check_model(self, config) -> None:
        """Raise ValueError naming the model field that does not fit the task's data."""
        vocab = getattr(config, "vocab_size", None)
        if vocab is None:
            raise ValueError(f"model.kind: {config.kind} takes no token ids; this recipe's data are tokens")
        if vocab < self.vocab_size:
            raise ValueError(f"model.vocab_size: {vocab} is smaller than the {self.vocab_size} tokens the recipe's "
                             "data uses; override it in model.overrides")

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor,
             targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the per-target losses, number of targets) of the model on one batch."""
        return _cross_entropy(model(inputs).logits, targets)

    def batch_stats(self, output, targets: torch.Tensor) -> dict[str, float]:
        """Sums over one evaluation batch (`output` = the model's); `metrics` turns their totals into numbers."""
        loss, count = _cross_entropy(output.logits, targets)
        targets = targets.flatten()
        picked = output.logits.flatten(0, -2)[targets != IGNORE]
        correct = (picked.argmax(-1) == targets[targets != IGNORE]).sum()
        return {"loss": loss.item(), "correct": correct.item(), "count": count.item()}

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """`scaled_accuracy` maps chance to 0 and perfect to 1, as the xLSTM paper reports formal-language results."""
        metrics = {"loss": totals["loss"] / totals["count"], "accuracy": totals["correct"] / totals["count"]}
        if self.chance is not None:
            metrics["scaled_accuracy"] = (metrics["accuracy"] - self.chance) / (1 - self.chance)
        return metrics

    def model_metrics(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        return {}


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits, targets = logits.float().flatten(0, -2), targets.flatten()
    return F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum"), (targets != IGNORE).sum()


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator for one training step: independent streams per (seed, step), no state to save."""
    return np.random.default_rng([seed, step])


def answer_batch(sequences: list[np.ndarray]) -> Batch:
    """Inputs are each sequence minus its last token (the answer), right-padded with 0; the only target of a
    sequence is its answer, at the position of its last input token."""
    width = max(len(s) for s in sequences) - 1
    inputs = np.zeros((len(sequences), width), dtype=np.int64)
    targets = np.full((len(sequences), width), IGNORE, dtype=np.int64)
    for row, seq in enumerate(sequences):
        inputs[row, : len(seq) - 1] = seq[:-1]
        targets[row, len(seq) - 2] = seq[-1]
    return Batch(torch.from_numpy(inputs), torch.from_numpy(targets))
