"""The zoo's name index: entries are the YAML files in zoo/, read on demand; nothing here imports torch.

    list_models("xlstm-*")          # names, fnmatch patterns, natural order
    get_entry("xlstm-125m")         # validated ZooEntry (weights, results, recipes, capabilities)
    get_config("xlstm-125m", overrides={"model.num_blocks": 6})   # validated model config
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from ruamel.yaml.comments import CommentedMap

from ..schemas.entry import Capability, ModelDocument, ZooEntry
from ..schemas.errors import ConfigError, Problem
from ..schemas.models import MODEL_SCHEMAS, ModelConfig
from ..schemas.yaml_io import Document, Overrides, apply_overrides, load_yaml, validate_document

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
SOURCE_PREFIXES = ("local-dir:", "hf-hub:", "zoo-data:")
"""Specs naming a checkpoint directory rather than a config (see builder.build_model)."""
CAPABILITIES = typing.get_args(Capability)


class UnknownModelError(LookupError):
    """A name that is not in the zoo; the message suggests the closest names."""

    def __init__(self, name: str, known: Iterable[str]):
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown zoo entry {name!r}{hint} (list them with: xlstm-zoo ls)")


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def entry_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(ZOO_DIR.glob("*.yaml"))}


def list_models(pattern: str | list[str] = "*", exclude: str | list[str] | None = None, *,
                pretrained: bool = False, capability: Optional[str] = None) -> list[str]:
    """Entry names matching any fnmatch `pattern` and no `exclude`; optionally only entries with weights
    or with a capability (e.g. "generate")."""
    patterns = [pattern] if isinstance(pattern, str) else pattern
    excludes = [exclude] if isinstance(exclude, str) else exclude or []
    names = [n for n in entry_paths() if any(fnmatch.fnmatchcase(n, p) for p in patterns)
             and not any(fnmatch.fnmatchcase(n, p) for p in excludes)]
    if pretrained:
        names = [n for n in names if get_entry(n).weights]
    if capability and capability not in CAPABILITIES:
        close = difflib.get_close_matches(capability, CAPABILITIES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LookupError(f"unknown capability {capability!r}{hint} (one of {', '.join(CAPABILITIES)})")
    if capability:
        names = [n for n in names if capability in get_entry(n).capabilities]
    return sorted(names, key=_natural_key)


def split_name(spec: str) -> tuple[str, Optional[str]]:
    """`name` or `name.tag` -> (name, tag); names may contain dots (xlstm-1.3b)."""
    paths = entry_paths()
    if spec in paths:
        return spec, None
    name, dot, tag = spec.rpartition(".")
    if dot and name in paths:
        entry = get_entry(name)
        if entry.weights:
            return name, entry.weights_for(tag).tag  # an unknown tag is refused, naming the entry's tags
    raise UnknownModelError(spec, paths)


def entry_document(name: str) -> Document:
    return load_yaml(entry_paths()[split_name(name)[0]])


@lru_cache(maxsize=None)
def _cached_entry(path: str, mtime: float) -> ZooEntry:
    entry = validate_document(ZooEntry, load_yaml(path))
    if entry.name != Path(path).stem:
        doc = load_yaml(path)
        src, line, col = doc.locate(("name",))
        raise ConfigError([Problem(src, line, col, "name", f"expected {Path(path).stem!r} (the file name), "
                                   f"got {entry.name!r}")])
    return entry


def get_entry(name: str) -> ZooEntry:
    path = entry_paths()[split_name(name)[0]]
    return _cached_entry(str(path), path.stat().st_mtime)


def looks_like_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or Path(spec).is_file()


def document_for(spec: Any) -> tuple[Document, Optional[str]]:
    """The entry-shaped document behind `spec` (zoo name, YAML path, config object or dict) and its tag."""
    if isinstance(spec, tuple(MODEL_SCHEMAS.values())):
        return Document(CommentedMap(model=spec.model_dump(mode="json")), "<config>"), None
    if isinstance(spec, dict):
        return Document(CommentedMap(model=spec.get("model", spec)), "<dict>"), None
    if not isinstance(spec, str):
        raise TypeError(f"expected a zoo name, a YAML path or a model config, got {type(spec).__name__}")
    if looks_like_path(spec):
        doc = load_yaml(spec)
        if isinstance(doc.data, dict) and "model" not in doc.data and "kind" in doc.data:
            doc = Document(CommentedMap(model=doc.data), doc.source)  # a bare model config file
        return doc, None
    name, tag = split_name(spec)
    return entry_document(name), tag


def get_config(spec: Any, overrides: Overrides = None) -> ModelConfig:
    """The validated model config of a zoo name, `name.tag`, YAML file, dict or config object."""
    doc, _ = document_for(spec)
    apply_overrides(doc, overrides)
    if not isinstance(doc.data, dict) or "model" not in doc.data:
        src, line, col = doc.locate(())
        raise ConfigError([Problem(src, line, col, "model", "expected a `model:` section, got nothing")])
    schema = ZooEntry if "name" in doc.data else ModelDocument
    return validate_document(schema, doc).model
