"""Offline tokenizers: characters of the corpus, UTF-8 bytes, GPT-2 BPE from the shipped ranks file, or a
Hugging Face tokenizer.json. Each has `vocab_size`, `encode`, `decode` and `eos_id` (None: it has none)."""

from __future__ import annotations

import base64
import gzip
import json
from functools import lru_cache
from pathlib import Path

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
    """char (from the corpus), byte, gpt2, or `local-dir:PATH` / `hf-hub:ORG/NAME[@REV]`: a checkpoint's
    tokenizer.json (the hub read offline)."""
    if kind.startswith(("local-dir:", "hf-hub:")):
        return HFTokenizer(checkpoint_tokenizer(kind))
    if kind == "char":
        return CharTokenizer(corpus)
    return ByteTokenizer() if kind == "byte" else GPT2Tokenizer()


class HFTokenizer:
    """A Hugging Face `tokenizer.json` through the `tokenizers` library (offline). Text is encoded without
    special tokens: the caller prepends BOS where the model's config asks for it."""

    def __init__(self, path: Path):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ImportError("a tokenizer.json needs the `tokenizers` package: pip install 'xlstm-zoo[eval]'") from e
        self._tokenizer = Tokenizer.from_file(str(path))
        self.vocab_size = max(self._tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        special = _special_tokens(path.parent)
        self.eos_id = self._token_id(special.get("eos_token"))
        if self.eos_id is None and (path.parent / "config.json").is_file():  # a model checkpoint's own EOS
            self.eos_id = json.loads((path.parent / "config.json").read_text()).get("eos_token_id")
        self.bos_id = self._token_id(special.get("bos_token"))

    def _token_id(self, token) -> int | None:
        if isinstance(token, dict):
            token = token.get("content")
        return None if token is None else self._tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)


TOKENIZER_FILE = "tokenizer.json"


def _special_tokens(directory: Path) -> dict:
    """bos/eos tokens as transformers writes them (tokenizer_config.json, else special_tokens_map.json)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (directory / name).is_file():
            return json.loads((directory / name).read_text())
    return {}


def checkpoint_tokenizer(source: str) -> Path:
    """The tokenizer.json of `local-dir:DIR` or `hf-hub:ORG/NAME[@REV]` (from the local Hugging Face cache)."""
    kind, _, rest = source.partition(":")
    if kind == "local-dir":
        path = Path(rest).expanduser() / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer: {source} has no {TOKENIZER_FILE} ({path} does not exist)")
        return path
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = rest.partition("@")
    found = try_to_load_from_cache(repo, TOKENIZER_FILE, revision=revision or None)
    if not isinstance(found, str):
        from huggingface_hub.constants import HF_HUB_CACHE

        raise FileNotFoundError(f"tokenizer: hf-hub:{repo} has no {TOKENIZER_FILE} in the local Hugging Face cache "
                                f"{HF_HUB_CACHE} (read offline; download it first, e.g. `huggingface-cli download {repo}`)")
    return Path(found)


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte value (byte-level BPE vocabularies are written in these)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def save_byte_tokenizer(directory: Path, eos_token: str = "<|endoftext|>") -> Path:
    """Write the byte tokenizer as a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json): ids 0-255
    are the bytes, as ByteTokenizer's, and `eos_token` is id 256. A byte-level checkpoint that carries it is
    readable by transformers' AutoTokenizer and lm-eval's `hf` model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {symbol: byte for byte, symbol in enumerate(_byte_symbols())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([eos_token])
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos_token, "model_max_length": 1 << 20}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory / TOKENIZER_FILE
