"""Language-model data from local text, JSON lines or parquet files, loaded through `datasets`.

The documents are joined into one token stream; its last `val_fraction` is the validation split. Training
windows start at offsets drawn from (seed, step); validation reads non-overlapping windows in order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ...schemas.recipe import TextData
from .batch import Batch, Task, step_rng
from .files import file_format, resolve
from .tokenizers import make_tokenizer


def read_documents(config: TextData) -> list[str]:
    import datasets

    datasets.disable_progress_bars()
    documents = []
    for file in config.files:
        path = resolve(file)
        if not path.is_file():
            raise FileNotFoundError(f"data.files: {path} does not exist")
        kind = config.format or file_format(path)
        if kind == "text":
            table = datasets.Dataset.from_text(str(path), sample_by="document", keep_in_memory=True)
        else:
            table = getattr(datasets.Dataset, f"from_{kind}")(str(path), keep_in_memory=True)
        if config.text_field not in table.column_names:
            raise ValueError(f"data.text_field: {path} has no column {config.text_field!r} ({table.column_names})")
        documents.extend(table[config.text_field])
    return documents


class TextTask(Task):
    def __init__(self, config: TextData):
        self.config = config
        corpus = "\n\n".join(read_documents(config))
        self.tokenizer = make_tokenizer(config.tokenizer, corpus)
        self.vocab_size = self.tokenizer.vocab_size
        tokens = np.asarray(self.tokenizer.encode(corpus), dtype=np.int64)
        split = int(len(tokens) * (1 - config.val_fraction))
        self._train, self._val = tokens[:split], tokens[split:]
        if min(len(self._train), len(self._val)) <= config.context_length:
            raise ValueError(f"data.context_length: {config.context_length} exceeds a split of the corpus")

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        ctx = self.config.context_length
        starts = step_rng(seed, step).integers(0, len(self._train) - ctx, batch_size)
        windows = np.stack([self._train[s : s + ctx + 1] for s in starts])
        return Batch(torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:]))

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        ctx = self.config.context_length
        count = (len(self._val) - 1) // ctx
        inputs = torch.from_numpy(self._val[: count * ctx].reshape(count, ctx))
        targets = torch.from_numpy(self._val[1 : count * ctx + 1].reshape(count, ctx))
        for start in range(0, count, batch_size):
            yield Batch(inputs[start : start + batch_size], targets[start : start + batch_size])
