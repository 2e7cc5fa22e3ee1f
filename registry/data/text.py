"""Language-model data from local text, JSON lines or parquet files, streamed through `datasets`.

`windows` sampling joins the documents into one token stream and draws each training row's offset from
(seed, step). `packed` sampling tokenizes the documents one at a time with EOS after each, cuts the train
part of the stream into consecutive sequences and visits them in a per-epoch permutation indexed by the
global sample number, so a batch depends only on (seed, step, batch size), never on the process count.
Either way the last `val_fraction` of the stream is the validation split, read in order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ...schemas.recipe import TextData
from .batch import Batch, Task, step_rng
from .files import file_format, resolve
from .tokenizers import make_tokenizer

EPOCH_STREAM = 1 << 21
"""Offset that keeps the epoch permutations' seed stream apart from the training steps'."""


def _paths(config: TextData) -> list[Path]:
    """The files in order; a name with * or ? stands for its sorted matches (shards of a corpus)."""
    paths = []
    for file in config.files:
        path = resolve(file)
        matches = sorted(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else [path]
        if not matches or not all(p.is_file() for p in matches):
            raise FileNotFoundError(f"data.files: {path} does not exist" + (" (no match)" if not matches else ""))
        paths.extend(matches)
    return paths


def iter_documents(config: TextData) -> Iterator[str]:
    """The documents of every file in order, one at a time (a text file is one document)."""
    import datasets

    datasets.disable_progress_bars()
    for path in _paths(config):
        kind = config.format or file_format(path)
        extra = {"sample_by": "document"} if kind == "text" else {}
        table = partial(datasets.load_dataset, kind, data_files=str(path), split="train", streaming=True, **extra)
        for n, row in enumerate(_rows(table, path, kind), 1):
            if n == 1 and config.text_field not in row:
                raise ValueError(f"data.text_field: {path} has no column {config.text_field!r} ({sorted(row)})")
            text = row[config.text_field]
            if not isinstance(text, str):
                raise ValueError(f"{path}: row {n}: data.text_field: expected the text as a string in "
                                 f"{config.text_field!r}, got {type(text).__name__}")
            yield text


def _rows(table, path: Path, kind: str) -> Iterator[dict]:
    """The rows of the file `table()` streams; the reader's errors (pyarrow's, the codec's) name the file."""
    rows = None
    while True:
        try:
            if rows is None:
                rows = iter(table())
            row = next(rows)
        except StopIteration:
            return
        except (ValueError, OSError) as exc:  # ArrowInvalid and UnicodeDecodeError are ValueErrors
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{path}: cannot read it as {kind} ({reason})") from None
        yield row


def packed_stream(config: TextData, tokenizer) -> np.ndarray:
    """Token ids of every document followed by EOS (uint16 where the vocabulary fits). With `cache_dir` the stream is
    kept as a .npy named by a hash of the inputs (written under a temporary name, then renamed) and
    memory-mapped by later runs."""
    cache = None
    if config.cache_dir:
        key = json.dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in _paths(config)] +
                         [config.format, config.text_field, config.tokenizer])
        cache = Path(config.cache_dir) / f"tokens-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
        if cache.is_file():
            return np.load(cache, mmap_mode="r")
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    chunks = [np.asarray(tokenizer.encode(doc) + [tokenizer.eos_id], dtype=dtype) for doc in iter_documents(config)]
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, tokens)
        os.replace(tmp, cache)
    return tokens


class TextTask(Task):
    def __init__(self, config: TextData):
        self.config = config
        if config.sampling == "packed":
            self.tokenizer = make_tokenizer(config.tokenizer, "")
            tokens = packed_stream(config, self.tokenizer)
        else:
            corpus = "\n\n".join(iter_documents(config))
            self.tokenizer = make_tokenizer(config.tokenizer, corpus)
            tokens = np.asarray(self.tokenizer.encode(corpus), dtype=np.int64)
        self.vocab_size = self.tokenizer.vocab_size
        split = int(len(tokens) * (1 - config.val_fraction))
        self._train, self._val = tokens[:split], tokens[split:]
        ctx = config.context_length
        if min(len(self._train), len(self._val)) <= ctx:
            raise ValueError(f"data.context_length: {ctx} exceeds a split of the corpus "
                             f"({len(self._train)} train / {len(self._val)} validation tokens)")
        self.sequences = (len(self._train) - 1) // ctx  # packed training sequences per epoch
        self._perm: tuple[tuple[int, int], np.ndarray] | None = None

    def _epoch(self, seed: int, epoch: int) -> np.ndarray:
        """The order of the sequences in an epoch (the latest one is kept: batches rarely straddle two)."""
        if self._perm is None or self._perm[0] != (seed, epoch):
            self._perm = (seed, epoch), step_rng(seed, EPOCH_STREAM + epoch).permutation(self.sequences)
        return self._perm[1]

    def samples(self, seed: int, indices: range) -> np.ndarray:
        """(len(indices), context + 1) token rows of the given global sample indices (packed sampling)."""
        ctx = self.config.context_length
        rows = []
        for i in indices:
            start = int(self._epoch(seed, i // self.sequences)[i % self.sequences]) * ctx
            rows.append(self._train[start : start + ctx + 1])
        return np.stack(rows).astype(np.int64)

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        ctx = self.config.context_length
        if self.config.sampling == "packed":
            windows = self.samples(seed, range((step - 1) * batch_size, step * batch_size))
        else:
            starts = step_rng(seed, step).integers(0, len(self._train) - ctx, batch_size)
            windows = np.stack([self._train[s : s + ctx + 1] for s in starts])
        return Batch(torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:]))

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        ctx = self.config.context_length
        count = (len(self._val) - 1) // ctx
        val = np.asarray(self._val, dtype=np.int64)
        inputs = torch.from_numpy(val[: count * ctx].reshape(count, ctx))
        targets = torch.from_numpy(val[1 : count * ctx + 1].reshape(count, ctx))
        for start in range(0, count, batch_size):
            yield Batch(inputs[start : start + batch_size], targets[start : start + batch_size])
