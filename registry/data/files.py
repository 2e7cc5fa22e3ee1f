"""Where data files are (`zoo-data:NAME` names a file shipped in the package's zoo/data, anything else a path)
and how their documents are read: local text, JSON lines or parquet, through `datasets`."""

from __future__ import annotations

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


def read_documents(files: list[str], format: str | None = None, text_field: str = "text",
                   key: str = "data.files") -> list[str]:
    """The documents of local files: a text file is one document, a json/parquet row one each. `key` names the
    setting the files came from in errors."""
    import datasets

    datasets.disable_progress_bars()
    documents = []
    for file in files:
        path = resolve(file)
        if not path.is_file():
            raise FileNotFoundError(f"{key}: {path} does not exist")
        kind = format or file_format(path)
        if kind == "text":
            table = datasets.Dataset.from_text(str(path), sample_by="document", keep_in_memory=True)
        else:
            table = getattr(datasets.Dataset, f"from_{kind}")(str(path), keep_in_memory=True)
        if text_field not in table.column_names:
            raise ValueError(f"data.text_field: {path} has no column {text_field!r} ({table.column_names})")
        documents.extend(table[text_field])
    return documents
