"""The batch format shared by all tasks, and the interface the training loop relies on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

import numpy as np
import torch

IGNORE = -100
"""Target value of positions that carry no loss (cross_entropy's default ignore_index)."""


class Batch(NamedTuple):
    inputs: torch.Tensor
    """(B, S) token ids (or the task's own inputs, e.g. (B, T) series values)."""
    targets: torch.Tensor
    """(B, S) next-token targets, IGNORE where nothing is predicted (or the task's own targets)."""

    def rows(self, start: int, stop: int) -> Batch:
        return Batch(self.inputs[start:stop], self.targets[start:stop])

    def shard(self, rank: int, world: int) -> Batch:
        """This process's contiguous share of a global batch."""
        size = self.inputs.shape[0] // world
        return self.rows(rank * size, (rank + 1) * size)


class Task(Protocol):
    """A task for models that are not token LMs also defines `check_model(config)` (ValueError naming the
    model field that does not fit), `loss(model, inputs, targets) -> (summed loss, number of terms)`,
    `batch_stats(output, targets) -> sums` and `metrics(totals) -> numbers` (the pipelines use them instead of
    the vocabulary check, token cross-entropy and accuracy)."""

    vocab_size: int | None
    """Number of token ids the task uses (the model's vocabulary must be at least this large); None: no tokens."""
    chance: float | None
    """Accuracy of guessing (for scaled accuracy), None where it is not meaningful."""

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch: ...

    def eval_batches(self, batch_size: int) -> Iterator[Batch]: ...


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
