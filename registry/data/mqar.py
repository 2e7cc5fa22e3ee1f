"""Multi-query associative recall (Zoology; xLSTM paper App. B.1.2): recall the value bound to each queried key.

A sequence is `k1 v1 ... kK vK` followed by a query region where each key appears once at a random even
offset, followed by its value; the model is scored on predicting those values. Keys come from the lower half
of the vocabulary, values from the upper half, 0 pads the query region.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ...schemas.recipe import MQARData
from .batch import IGNORE, Batch, Task, step_rng

EVAL_STREAM = 1 << 20


def mqar_batch(rng: np.random.Generator, count: int, length: int, pairs: int, vocab: int) -> Batch:
    half = vocab // 2
    seqs = np.zeros((count, length), dtype=np.int64)
    targets = np.full((count, length - 1), IGNORE, dtype=np.int64)
    rows = np.arange(count)[:, None]
    keys = np.argsort(rng.random((count, half - 1)), axis=1)[:, :pairs] + 1
    values = np.argsort(rng.random((count, vocab - half)), axis=1)[:, :pairs] + half
    seqs[:, 0 : 2 * pairs : 2], seqs[:, 1 : 2 * pairs : 2] = keys, values
    slots = (length - 2 * pairs) // 2
    starts = 2 * pairs + 2 * np.sort(np.argsort(rng.random((count, slots)), axis=1)[:, :pairs], axis=1)
    order = np.argsort(rng.random((count, pairs)), axis=1)  # which key is queried in which slot
    seqs[rows, starts], seqs[rows, starts + 1] = keys[rows, order], values[rows, order]
    targets[rows, starts] = values[rows, order]
    return Batch(torch.from_numpy(seqs[:, :-1].copy()), torch.from_numpy(targets))


class MQARTask(Task):
    def __init__(self, config: MQARData):
        self.config = config
        self.vocab_size = config.vocab_size
        self.chance = 1 / (config.vocab_size - config.vocab_size // 2)
        length = config.eval_context_length or config.context_length
        self._eval = mqar_batch(
            step_rng(config.seed, EVAL_STREAM), config.eval_samples, length, config.num_kv_pairs, config.vocab_size
        )

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        c = self.config
        return mqar_batch(step_rng(seed, step), batch_size, c.context_length, c.num_kv_pairs, c.vocab_size)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self._eval.inputs), batch_size):
            yield self._eval.rows(start, start + batch_size)
