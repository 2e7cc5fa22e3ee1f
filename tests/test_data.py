"""Data for recipes: the formal-language answers are right, batches are deterministic per (seed, step),
MQAR targets are the bound values, text splits and tokenizers round-trip offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xlstm_zoo.registry.data import IGNORE, make_task
from xlstm_zoo.registry.data.batch import Batch, answer_batch
from xlstm_zoo.registry.data.formal import GENERATORS
from xlstm_zoo.registry.data.mqar import mqar_batch
from xlstm_zoo.registry.data.tokenizers import CharTokenizer, GPT2Tokenizer
from xlstm_zoo.schemas.recipe import FormalLanguageData, MQARData, TextData

OPS = {1: "+", 2: "-", 3: "*"}


def expected_answer(task: str, seq: np.ndarray, vocab: int) -> int:
    """Each task's answer computed independently of the generator's arithmetic."""
    body = [int(t) for t in seq[:-1]]
    if task == "parity":
        return 1 if body.count(2) % 2 == 0 else 2
    if task == "even_pairs":
        pairs = sum(1 for a, b in zip(body, body[1:]) if a != b)
        return 1 if pairs % 2 == 0 else 2
    if task == "cycle_navigation":
        return 4 + sum({1: 0, 2: 1, 3: -1}[t] for t in body) % (vocab - 4)
    assert body[-1] == 4  # '='
    expression = "".join(str(t - 5) if i % 2 == 0 else OPS[t] for i, t in enumerate(body[:-1]))
    return 5 + eval(expression) % (vocab - 5)


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_formal_answers(task):
    vocab = 10 if task in ("cycle_navigation", "modular_arithmetic") else 3
    rng = np.random.default_rng(7)
    for length in list(range(3, 12)) + [40, 101]:
        seq = GENERATORS[task](rng, length, vocab)
        assert len(seq) == (length - 1 + length % 2 if task == "modular_arithmetic" else length)  # odd lengths only
        assert seq[-1] == expected_answer(task, seq, vocab), (task, seq)
        assert 0 < seq.min() and seq.max() < vocab


def test_formal_batches_are_deterministic_and_shaped():
    task = make_task(FormalLanguageData(kind="formal-language", task="parity", eval_samples=64))
    a, b, c = task.train_batch(1, 5, 32), task.train_batch(1, 5, 32), task.train_batch(1, 6, 32)
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    assert a.inputs.shape[1] <= 39 and ((a.targets != IGNORE).sum(1) == 1).all()
    lengths = [int((row != 0).sum()) + 1 for batch in task.eval_batches(16) for row in batch.inputs]
    assert len(lengths) == 64 and min(lengths) >= 40 and max(lengths) <= 256
    assert lengths == sorted(lengths)  # sorted for little padding
    assert task.chance == 0.5 and task.vocab_size == 3


def test_answer_batch_puts_the_target_after_the_last_symbol():
    batch = answer_batch([np.array([1, 2, 2, 1]), np.array([2, 2])])
    assert batch.inputs.tolist() == [[1, 2, 2], [2, 0, 0]]
    assert batch.targets.tolist() == [[IGNORE, IGNORE, 1], [2, IGNORE, IGNORE]]


def test_shards_reassemble_the_global_batch():
    batch = Batch(torch.arange(24).view(6, 4), torch.arange(24).view(6, 4))
    parts = [batch.shard(r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p.inputs for p in parts]), batch.inputs)


def test_mqar_targets_are_the_bound_values():
    batch = mqar_batch(np.random.default_rng(0), 16, 64, 8, 64)
    for inputs, targets in zip(batch.inputs.tolist(), batch.targets.tolist()):
        binding = dict(zip(inputs[0:16:2], inputs[1:16:2]))
        assert len(binding) == 8 and all(k < 32 <= v for k, v in binding.items())
        queried = [(inputs[p], t) for p, t in enumerate(targets) if t != IGNORE]
        assert sorted(k for k, _ in queried) == sorted(binding)
        assert all(binding[k] == v for k, v in queried)
    task = make_task(MQARData(kind="mqar", vocab_size=64, context_length=32, num_kv_pairs=4, eval_samples=10))
    assert sum(len(b.inputs) for b in task.eval_batches(4)) == 10


def test_text_from_jsonl_txt_and_parquet(tmp_path):
    docs = ["to be or not to be", "that is the question"]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    (tmp_path / "b.txt").write_text("\n\n".join(docs))
    import datasets

    datasets.Dataset.from_dict({"text": docs}).to_parquet(str(tmp_path / "c.parquet"))
    streams = []
    for name, field in (("a.jsonl", "body"), ("b.txt", "text"), ("c.parquet", "text")):
        task = make_task(TextData(kind="text", files=[str(tmp_path / name)], text_field=field, context_length=4,
                                  val_fraction=0.25))
        streams.append(task.tokenizer.decode(np.concatenate([task._train, task._val]).tolist()))
        batch = task.train_batch(0, 1, 3)
        assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    assert streams == ["\n\n".join(docs)] * 3


def test_shipped_corpus_and_tokenizers():
    task = make_task(TextData(kind="text", files=["zoo-data:shakespeare.jsonl.gz"], context_length=128))
    assert task.vocab_size == 76 and len(task._train) + len(task._val) == 1_035_946 + 7 * 2
    assert sum(len(b.inputs) for b in task.eval_batches(128)) == (len(task._val) - 1) // 128
    text = "O Romeo, Romeo! wherefore art thou Romeo?"
    assert CharTokenizer(text).decode(CharTokenizer(text).encode(text)) == text
    gpt2 = GPT2Tokenizer()
    assert gpt2.encode("Hello world") == [15496, 995]
    sample = "  It's 2024 -- naïve café!\n\n"
    assert gpt2.decode(gpt2.encode(sample)) == sample


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="data.vocab_size"):
        make_task(FormalLanguageData(kind="formal-language", task="cycle_navigation", vocab_size=5))
    with pytest.raises(FileNotFoundError, match="data.files"):
        make_task(TextData(kind="text", files=["/nonexistent/x.txt"]))
