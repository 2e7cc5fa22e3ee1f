"""Offline tokenizers: characters of the corpus, UTF-8 bytes, or GPT-2 BPE from the shipped ranks file."""

from __future__ import annotations

import base64
import gzip
from functools import lru_cache

from .files import resolve

# GPT-2's pre-tokenisation pattern (tiktoken r50k_base / the original encoder.py).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = 50256
NO_MERGE = 1 << 62
RANKS_FILE = "zoo-data:gpt2.tiktoken.gz"


def check_ids(ids, vocab_size: int) -> None:
    """Decoding takes ids the tokenizer can produce: anything else is a ValueError naming the first."""
    for j, i in enumerate(ids):
        if not 0 <= i < vocab_size:
            raise ValueError(f"ids[{j}]: expected a token id in [0, {vocab_size - 1}], got {i}")


class CharTokenizer:
    """One id per distinct character of the corpus, in sorted order (deterministic for a given corpus)."""

    eos_id = None

    def __init__(self, corpus: str):
        self.chars = sorted(set(corpus))
        self._ids = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"text: the character {e.args[0]!r} at position {text.index(e.args[0])} is not one "
                             f"of the {self.vocab_size} characters of the corpus this tokenizer was made from") from None

    def decode(self, ids: list[int]) -> str:
        check_ids(ids, self.vocab_size)
        return "".join(self.chars[i] for i in ids)


class ByteTokenizer:
    vocab_size = 256
    eos_id = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        check_ids(ids, self.vocab_size)
        return bytes(ids).decode("utf-8", errors="replace")


class GPT2Tokenizer:
    """Byte-level BPE with GPT-2's ranks: each pre-token is merged pairwise, lowest rank first (as tiktoken)."""

    vocab_size = END_OF_TEXT + 1
    eos_id = END_OF_TEXT

    def __init__(self):
        import regex  # GPT-2's pattern needs \p{..} classes

        self._pattern = regex.compile(GPT2_PATTERN)
        lines = gzip.decompress(resolve(RANKS_FILE).read_bytes()).splitlines()
        self._ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines)}
        self._bytes = {rank: token for token, rank in self._ranks.items()}
        self._merge = lru_cache(maxsize=1 << 16)(self._merge_piece)

    def _merge_piece(self, piece: bytes) -> tuple[int, ...]:
        parts = [piece[i : i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            rank, i = min((self._ranks.get(a + b, NO_MERGE), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
            if rank == NO_MERGE:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return tuple(self._ranks[p] for p in parts)

    def encode(self, text: str) -> list[int]:
        return [i for piece in self._pattern.findall(text) for i in self._merge(piece.encode("utf-8"))]

    def decode(self, ids: list[int]) -> str:
        check_ids(ids, self.vocab_size)
        return b"".join(self._bytes[i] for i in ids if i != END_OF_TEXT).decode("utf-8", errors="replace")


def make_tokenizer(kind: str, corpus: str):
    if kind.startswith(("local-dir:", "hf-hub:")):
        raise ValueError(f"data.tokenizer: checkpoint tokenizers ({kind}) are not available in this build")
    if kind == "char":
        return CharTokenizer(corpus)
    return ByteTokenizer() if kind == "byte" else GPT2Tokenizer()
