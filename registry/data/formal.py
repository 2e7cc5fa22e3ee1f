"""The formal-language tasks of the xLSTM paper, with the token layout of NX-AI/xlstm's `experiments/`.

A sample of length L holds L-1 task symbols and the answer as its last token; 0 is padding. Training lengths
are short and evaluation lengths long, so the evaluation measures length extrapolation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ...schemas.recipe import FormalLanguageData
from .batch import Batch, Task, answer_batch, step_rng

EVAL_STREAM = 1 << 20
"""Offset that keeps the evaluation seed stream apart from training steps."""


def parity(rng: np.random.Generator, length: int, vocab: int) -> np.ndarray:
    """Symbols 1/2; the answer is 1 when the count of 2s is even, else 2."""
    symbols = rng.integers(1, 3, length - 1)
    return np.append(symbols, (symbols == 2).sum() % 2 + 1)


def even_pairs(rng: np.random.Generator, length: int, vocab: int) -> np.ndarray:
    """Symbols 1/2; #ab + #ba is even exactly when the first and last symbols agree (answer 1, else 2)."""
    symbols = rng.integers(1, 3, length - 1)
    return np.append(symbols, 1 if symbols[0] == symbols[-1] else 2)


def cycle_navigation(rng: np.random.Generator, length: int, vocab: int) -> np.ndarray:
    """Moves 1 = stay, 2 = +1, 3 = -1 on a cycle of vocab-4 positions from 0; answer 4 + end position."""
    moves = rng.integers(1, 4, length - 1)
    position = np.select([moves == 2, moves == 3], [1, -1], 0).sum() % (vocab - 4)
    return np.append(moves, 4 + position)


def modular_arithmetic(rng: np.random.Generator, length: int, vocab: int) -> np.ndarray:
    """`n op n ... n =` with numbers 5.. (= 0..m-1, m = vocab-5) and ops 1 '+', 2 '-', 3 '*' (with precedence);
    the answer is 5 + the value mod m. Lengths are odd (an even draw is shortened by one)."""
    modulus = vocab - 5
    count = (length - (1 - length % 2) - 1) // 2  # numbers in the expression
    numbers = rng.integers(0, modulus, count)
    ops = rng.integers(1, 4, count - 1)
    total, term = 0, int(numbers[0])
    for op, number in zip(ops, numbers[1:]):
        if op == 3:
            term = term * int(number) % modulus
        else:
            total, term = total + term, int(number) if op == 1 else -int(number)
    expression = np.empty(2 * count - 1, dtype=np.int64)
    expression[0::2], expression[1::2] = numbers + 5, ops
    return np.concatenate([expression, [4, 5 + (total + term) % modulus]])


GENERATORS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "parity": parity,
    "even_pairs": even_pairs,
    "cycle_navigation": cycle_navigation,
    "modular_arithmetic": modular_arithmetic,
}
DEFAULT_VOCAB = {"parity": 3, "even_pairs": 3, "cycle_navigation": 10, "modular_arithmetic": 10}
MIN_VOCAB = {"parity": 3, "even_pairs": 3, "cycle_navigation": 6, "modular_arithmetic": 7}


class FormalLanguageTask(Task):
    def __init__(self, config: FormalLanguageData):
        self.config = config
        self.vocab_size = config.vocab_size or DEFAULT_VOCAB[config.task]
        if self.vocab_size < MIN_VOCAB[config.task]:
            raise ValueError(f"data.vocab_size: {config.task} needs at least {MIN_VOCAB[config.task]}, got {self.vocab_size}")
        if config.task == "modular_arithmetic" and config.train_lengths.min < 3:
            raise ValueError("data.train_lengths.min: modular_arithmetic needs lengths >= 3")
        self.chance = {"parity": 0.5, "even_pairs": 0.5, "cycle_navigation": 1 / (self.vocab_size - 4)}.get(
            config.task, 1 / (self.vocab_size - 5)
        )
        self._generate = GENERATORS[config.task]
        rng = step_rng(config.seed, EVAL_STREAM)
        # Sorted by length so that each evaluation batch pads little.
        self._eval = sorted(self._samples(rng, config.eval_samples, config.eval_lengths), key=len)

    def _samples(self, rng: np.random.Generator, count: int, lengths) -> list[np.ndarray]:
        return [self._generate(rng, int(n), self.vocab_size) for n in rng.integers(lengths.min, lengths.max + 1, count)]

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        return answer_batch(self._samples(step_rng(seed, step), batch_size, self.config.train_lengths))

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self._eval), batch_size):
            yield answer_batch(self._eval[start : start + batch_size])
