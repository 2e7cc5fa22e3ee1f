"""Finding, loading and pinning recipes: a recipe file, or the recipe an entry names for a role."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ...schemas.errors import ConfigError, Problem
from ...schemas.recipe import InstructionData, Recipe, TextData
from ...schemas.yaml_io import Document, Overrides, apply_overrides, dump_yaml, load_yaml, validate_document
from ..index import SOURCE_PREFIXES, entry_paths, get_config, get_entry, split_name

if TYPE_CHECKING:  # loading and checking a recipe needs no torch (`xlstm-zoo validate`)
    import torch

    from ..data import Task

YAML_SUFFIXES = (".yaml", ".yml")
HEADER = "# yaml-language-server: $schema=https://xlstm-zoo.dev/schemas/recipe.schema.json\n"


def is_file_spec(spec: str) -> bool:
    return Path(spec).suffix in YAML_SUFFIXES


def entry_recipe(name: str, role: str) -> Path:
    """The file of the entry's `role` recipe (paths in `recipes` are relative to the entry file)."""
    entry = get_entry(name)
    if role not in entry.recipes:
        raise LookupError(f"zoo entry {name!r} has no {role!r} recipe (recipes: {', '.join(entry.recipes) or 'none'})")
    return entry_paths()[split_name(name)[0]].parent / entry.recipes[role]


def load_recipe(path: Path, overrides: Overrides = None) -> Recipe:
    """Validate a recipe file with command-line overrides (errors as FILE:LINE:COL), with its relative paths
    made absolute so the recipe means the same from any directory."""
    doc = apply_overrides(load_yaml(path), overrides, "<command line>")
    recipe = pin_paths(validate_document(Recipe, doc), Path(path).resolve().parent, doc)
    _check_model(recipe, doc)
    return recipe


def _check_model(recipe: Recipe, doc: Document) -> None:
    """Resolve the recipe's model now (no torch), so a wrong name or override is reported at its place in
    the recipe, not as a bare error when training starts."""
    ref = recipe.model
    if ref.name.startswith(SOURCE_PREFIXES):
        return  # a checkpoint directory: read when the model is built
    try:
        get_config(ref.name, ref.overrides)
    except LookupError as e:
        raise ConfigError([Problem(*doc.locate(("model", "name")), "model.name", str(e))]) from None
    except ConfigError as e:
        raise ConfigError([_in_recipe(p, doc, ref.overrides) for p in e.problems]) from None


def _in_recipe(problem: Problem, doc: Document, overrides: dict) -> Problem:
    """A problem of the recipe's model, placed in the recipe: at the override that caused it (the longest key
    it is under), else at `model.overrides` (or `model.name`) with the entry's own position in the message."""
    if problem.source != "<override>":
        loc = ("model", "overrides") if overrides else ("model", "name")
        return Problem(*doc.locate(loc), ".".join(loc), f"the model with these overrides: {problem}")
    keys = [k for k in overrides if problem.path == k or problem.path.startswith(k + ".")]
    loc = ("model", "overrides", max(keys, key=len)) if keys else ("model", "overrides")
    return Problem(*doc.locate(loc), f"model.overrides.{problem.path}", problem.message)


def pin_paths(recipe: Recipe, base: Path, doc: Optional[Document] = None) -> Recipe:
    """Relative paths made absolute: those of the recipe file against its folder (`base`), those given as
    command-line overrides of `doc` against the working directory."""

    def folder(*loc) -> Path:
        given = doc is not None and any(loc[:n] in doc.override_sources for n in range(1, len(loc) + 1))
        return Path.cwd() if given else base

    update = {}
    if is_file_spec(recipe.model.name):
        update["model"] = recipe.model.model_copy(update={"name": str(folder("model", "name") / recipe.model.name)})
    if isinstance(recipe.data, (TextData, InstructionData)):
        files = [f if ":" in f else str(folder("data", "files", i) / f) for i, f in enumerate(recipe.data.files)]
        update["data"] = recipe.data.model_copy(update={"files": files})
    return recipe.model_copy(update=update)


def save_recipe(recipe: Recipe, path: Path) -> None:
    """The resolved recipe of a run, beside its outputs (what `eval DIR` and `--resume` read back)."""
    path.write_text(HEADER + dump_yaml(recipe.model_dump(mode="json")))


def build(recipe: Recipe, task: Task, device: torch.device) -> torch.nn.Module:
    """The recipe's model; it must fit the task's data (vocabulary, image shape, ...). An adapter's base is built
    in its dtype."""
    from ..builder import build_model
    from ..factory import parse_dtype

    dtype = parse_dtype(recipe.adapter.base_dtype) if recipe.adapter else None
    model = build_model(recipe.model.name, pretrained=recipe.model.pretrained, overrides=recipe.model.overrides,
                        device=device, dtype=dtype)
    task.check_model(model.config)
    return model


def recipe_tokenizer(data) -> str:
    """The tokenizer spec (data.tokenizer_specs.load_tokenizer) a text recipe trains with, to score text later."""
    if not isinstance(data, TextData):
        raise ValueError(f"scoring text needs a model trained on text, but the recipe's data is {data.kind!r}")
    if data.tokenizer != "char":
        return data.tokenizer
    if len(data.files) != 1:
        raise ValueError("a char-level model: its recipe must read one file to name its tokenizer (char:FILE)")
    return f"char:{data.files[0]}"
