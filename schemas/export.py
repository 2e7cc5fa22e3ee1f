"""JSON Schema of each top-level document kind, for editors (yaml-language-server) and CI."""

from __future__ import annotations

import json
from pathlib import Path

from .entry import ZooEntry
from .recipe import Recipe

DOCUMENTS: dict[str, type] = {"zoo-entry": ZooEntry, "recipe": Recipe}
SCHEMA_DIR = Path(__file__).parent


def json_schema(kind: str = "zoo-entry") -> dict:
    schema = DOCUMENTS[kind].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://xlstm-zoo.dev/schemas/{kind}.schema.json"
    return schema


def schema_text(kind: str = "zoo-entry") -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def schema_path(kind: str) -> Path:
    return SCHEMA_DIR / f"{kind}.schema.json"


def write_schemas() -> list[Path]:
    paths = []
    for kind in DOCUMENTS:
        schema_path(kind).write_text(schema_text(kind))
        paths.append(schema_path(kind))
    return paths
