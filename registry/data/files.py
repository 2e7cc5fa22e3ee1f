"""Where data files are: `zoo-data:NAME` names a file shipped in the package's zoo/data, anything else a path."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

ZOO_DATA = "zoo-data:"
SUFFIX_FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def resolve(file: str) -> Path:
    if file.startswith(ZOO_DATA):
        return Path(str(resources.files("xlstm_zoo.zoo") / "data" / file[len(ZOO_DATA) :]))
    return Path(file)


def file_format(path: Path) -> str:
    """text, json or parquet from the suffixes (compression suffixes such as .gz are skipped)."""
    suffixes = [s for s in path.suffixes if s in SUFFIX_FORMATS]
    if not suffixes:
        raise ValueError(f"data.format: cannot infer the format of {path}; set it to text, json or parquet")
    return SUFFIX_FORMATS[suffixes[-1]]


def data_files(config) -> Iterator[tuple[Path, str]]:
    """(path, format) of each of a data section's `files`, each checked to exist."""
    for file in config.files:
        path = resolve(file)
        if not path.is_file():
            raise FileNotFoundError(f"data.files: {path} does not exist")
        yield path, config.format or file_format(path)
