"""Tokenizers by name, as `tokenizer=` of the lm-eval model and `xlstm-zoo eval --data` take them."""

from __future__ import annotations

from pathlib import Path

from ...schemas.recipe import TextData
from .text import iter_documents
from .tokenizers import TOKENIZER_FILE, CharTokenizer, HFTokenizer, make_tokenizer

TOKENIZER_SPECS = "byte, gpt2, char:FILE, a directory holding tokenizer.json, or hf-hub:ORG/NAME"


def load_tokenizer(spec: str | None, checkpoint_dir: Path | None = None):
    """A tokenizer by name: `byte`, `gpt2`, `char:FILE` (the characters of FILE's documents, as a `char`
    recipe on that file), a tokenizer directory / tokenizer.json (or `local-dir:DIR`), or `hf-hub:ORG/NAME[@REV]`
    (read from the local Hugging Face cache only). None: the checkpoint directory's tokenizer.json."""
    if spec is None:
        if checkpoint_dir is not None and (checkpoint_dir / TOKENIZER_FILE).is_file():
            return HFTokenizer(checkpoint_dir / TOKENIZER_FILE)
        where = f" ({checkpoint_dir} has no {TOKENIZER_FILE})" if checkpoint_dir is not None else ""
        raise ValueError(f"tokenizer: none given and none found with the model{where}; pass one of {TOKENIZER_SPECS}")
    if spec in ("byte", "gpt2") or spec.startswith(("local-dir:", "hf-hub:")):
        return make_tokenizer(spec, "")
    if spec.startswith("char:"):
        file = spec[len("char:"):]
        if ":" not in file and not Path(file).is_file():  # (zoo-data:NAME is the reader's to find)
            raise ValueError(f"tokenizer: {spec}: {file} does not exist")
        return CharTokenizer("\n\n".join(iter_documents(TextData(files=[file]))))
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if path.is_file():
        return HFTokenizer(path)
    raise ValueError(f"tokenizer: expected {TOKENIZER_SPECS}, got {spec!r}"
                     + (f" ({path} does not exist)" if "/" in spec else ""))


def check_vocabulary(tokenizer, vocab_size: int, name) -> None:
    """A tokenizer with more ids than the model's vocabulary belongs to another model."""
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"tokenizer: {name} has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{vocab_size}: pass the tokenizer the model was trained with")
