"""Instruction tuning data: prompt/response records; the targets are the response's tokens only.

A sample is prompt tokens + response tokens (+ EOS where the tokenizer has one). Its targets are the next tokens,
IGNORE wherever the next token is still part of the prompt, so the loss counts only predicted response
tokens. Batches are right-padded to their longest sample (inputs 0, targets IGNORE).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ...schemas.recipe import InstructionData
from .batch import IGNORE, Batch, Task, step_rng
from .files import data_files
from .tokenizers import make_tokenizer


def read_records(config: InstructionData) -> list[tuple[str, str]]:
    import datasets

    datasets.disable_progress_bars()
    fields = (config.prompt_field, config.response_field)
    records = []
    for path, kind in data_files(config):
        if kind not in ("json", "parquet"):
            raise ValueError(f"data.format: instructions are read from json lines or parquet, got {kind} ({path})")
        table = getattr(datasets.Dataset, f"from_{kind}")(str(path), keep_in_memory=True)
        missing = [f for f in fields if f not in table.column_names]
        if missing:
            raise ValueError(f"data: {path} has no column {', '.join(map(repr, missing))} ({table.column_names}); "
                             "set data.prompt_field / data.response_field")
        records.extend(zip(table[fields[0]], table[fields[1]]))
    return records


def sample(prompt: list[int], response: list[int], context: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of one record, cut to `context` positions; targets IGNORE where a prompt token is next."""
    ids = np.asarray(prompt + response, dtype=np.int64)[: context + 1]
    targets = ids[1:].copy()
    targets[: max(len(prompt) - 1, 0)] = IGNORE
    return ids[:-1], targets


def pad_batch(samples: list[tuple[np.ndarray, np.ndarray]]) -> Batch:
    width = max(len(inputs) for inputs, _ in samples)
    inputs = np.zeros((len(samples), width), dtype=np.int64)
    targets = np.full((len(samples), width), IGNORE, dtype=np.int64)
    for row, (x, y) in enumerate(samples):
        inputs[row, : len(x)], targets[row, : len(y)] = x, y
    return Batch(torch.from_numpy(inputs), torch.from_numpy(targets))


class InstructionTask(Task):
    def __init__(self, config: InstructionData):
        self.config = config
        records = read_records(config)
        self.tokenizer = make_tokenizer(config.tokenizer, "".join(p + r for p, r in records))
        self.vocab_size = self.tokenizer.vocab_size
        eos = [] if self.tokenizer.eos_id is None else [self.tokenizer.eos_id]
        encoded = [(self.tokenizer.encode(p), self.tokenizer.encode(r) + eos) for p, r in records]
        crowded = [len(p) for p, r in encoded if len(p) >= config.context_length or not r]
        if crowded:
            raise ValueError(f"data.context_length: {len(crowded)} records have no response token to learn: an "
                             f"empty response, or a prompt of at least the context ({config.context_length}) tokens")
        samples = [sample(p, r, config.context_length) for p, r in encoded]
        split = int(len(samples) * (1 - config.val_fraction))
        self._train, self._val = samples[:split], samples[split:]
        if not self._train or not self._val:
            raise ValueError(f"data.val_fraction: {len(samples)} records leave no train or no validation split")

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        rows = step_rng(seed, step).integers(0, len(self._train), batch_size)
        return pad_batch([self._train[r] for r in rows])

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self._val), batch_size):
            yield pad_batch(self._val[start : start + batch_size])
