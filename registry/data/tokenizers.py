"""Offline tokenizers: characters of the corpus, UTF-8 bytes, GPT-2 BPE from the shipped ranks file, or a
Hugging Face tokenizer.json. Each has `vocab_size`, `encode`, `decode`, `eos_id` (None: it has none) and
`files()`: itself as a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) that HFTokenizer reads
back with the same ids and text, so a trained checkpoint carries its tokenizer."""

from __future__ import annotations

import base64
import gzip
import json
from functools import lru_cache
from pathlib import Path

from .files import resolve
from .hub import source_directory

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

    def files(self) -> dict[str, str]:
        """A word-level vocabulary of the characters, each code point its own pre-token, fused on decoding."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

        tokenizer = Tokenizer(models.WordLevel(vocab=self._ids))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        tokenizer.decoder = decoders.Fuse()
        return hf_files(tokenizer, None)


class ByteTokenizer:
    vocab_size = 256
    eos_id = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        check_ids(ids, self.vocab_size)
        return bytes(ids).decode("utf-8", errors="replace")

    def files(self) -> dict[str, str]:
        return hf_files(byte_level(BYTES, []), None)


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

    def _merged_from(self, token: bytes) -> tuple[bytes, bytes]:
        """The pair whose merge makes `token`: its bytes merged by the lower ranks only end in two parts."""
        rank, parts = self._ranks[token], [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            low, i = min((self._ranks.get(a + b, NO_MERGE), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
            if low >= rank:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) != 2:
            raise ValueError(f"{RANKS_FILE}: the token {token!r} (rank {rank}) is no merge of two lower-ranked ones")
        return parts[0], parts[1]

    def files(self) -> dict[str, str]:
        """Byte-level BPE with the ranks as vocabulary and the merges they imply, in rank order (GPT-2's own
        tokenizer.json has these)."""
        merges = [self._merged_from(t) for t, _ in sorted(self._ranks.items(), key=lambda kv: kv[1]) if len(t) > 1]
        return hf_files(byte_level(self._ranks, merges, "<|endoftext|>"), "<|endoftext|>")


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
        self.directory = path.parent
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
        try:
            return self._tokenizer.encode(text, add_special_tokens=False).ids
        except Exception as e:  # the library raises a bare Exception (e.g. a word-level vocabulary without UNK)
            raise ValueError(f"text: {self.directory / TOKENIZER_FILE} cannot encode it ({e}); a char tokenizer "
                             "saved by a run knows only its corpus' characters") from None

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def files(self) -> dict[str, str]:
        """The tokenizer.json this was read from with its special-token files (a fine-tune carries its base's);
        an EOS known only from the model's config.json is named in tokenizer_config.json (an adapter directory
        has no config.json)."""
        names = (TOKENIZER_FILE, *SPECIAL_TOKEN_FILES)
        files = {name: (self.directory / name).read_text() for name in names if (self.directory / name).is_file()}
        if self.eos_id is not None and self._token_id(_special_tokens(self.directory).get("eos_token")) is None:
            config = {**json.loads(files.get(SPECIAL_TOKEN_FILES[0], "{}")),
                      "eos_token": self._tokenizer.id_to_token(self.eos_id)}
            files[SPECIAL_TOKEN_FILES[0]] = json.dumps(config, indent=2) + "\n"
        return files


TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def _special_tokens(directory: Path) -> dict:
    """bos/eos tokens as transformers writes them (tokenizer_config.json, else special_tokens_map.json)."""
    for name in SPECIAL_TOKEN_FILES:
        if (directory / name).is_file():
            return json.loads((directory / name).read_text())
    return {}


def checkpoint_tokenizer(source: str) -> Path:
    """The tokenizer.json of `local-dir:DIR` or `hf-hub:ORG/NAME[@REV]` (from the local Hugging Face cache)."""
    try:
        return source_directory(source, [TOKENIZER_FILE]) / TOKENIZER_FILE
    except FileNotFoundError as e:
        raise FileNotFoundError(f"tokenizer: {e}") from None


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


BYTES = {bytes([b]): b for b in range(256)}


def byte_level(vocab: dict[bytes, int], merges: list[tuple[bytes, bytes]], eos_token: str | None = None):
    """A byte-level BPE `tokenizers.Tokenizer` (GPT-2's layout: tokens spelled in its byte symbols, GPT-2's
    pre-tokenisation pattern) with `eos_token` added as the next id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    symbols = _byte_symbols()

    def spell(token: bytes) -> str:
        return "".join(symbols[b] for b in token)

    tokenizer = Tokenizer(models.BPE(vocab={spell(t): i for t, i in vocab.items()},
                                     merges=[(spell(a), spell(b)) for a, b in merges]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if eos_token is not None:
        tokenizer.add_special_tokens([eos_token])
    return tokenizer


def hf_files(tokenizer, eos_token: str | None) -> dict[str, str]:
    """tokenizer.json and the tokenizer_config.json naming its EOS, as transformers' AutoTokenizer reads them."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 20}
    if eos_token is not None:
        config["eos_token"] = eos_token
    return {TOKENIZER_FILE: tokenizer.to_str(), SPECIAL_TOKEN_FILES[0]: json.dumps(config, indent=2) + "\n"}


def save_byte_tokenizer(directory: Path, eos_token: str = "<|endoftext|>") -> Path:
    """Write the byte tokenizer with `eos_token` as id 256 (a byte-level checkpoint with an end-of-text token, as
    a test or benchmark makes one): readable by transformers' AutoTokenizer and lm-eval's `hf` model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in hf_files(byte_level(BYTES, [], eos_token), eos_token).items():
        (directory / name).write_text(text)
    return directory / TOKENIZER_FILE
