"""YAML documents with positions: safe loading, dotted overrides, and validation errors as FILE:LINE:COL.

ruamel.yaml's round-trip loader keeps each key's line and column (and comments, for `cp`); it never
constructs Python objects, so a `!!python/...` tag is reported as an error instead of running.
"""

from __future__ import annotations

import difflib
import io
import re
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .errors import ConfigError, FieldErrors, Problem

Overrides = Union[Mapping[str, Any], Iterable[str], None]
MAX_NODES = 100_000
"""Values a document may hold once aliases are expanded (the zoo's largest holds a few hundred)."""
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.indent(mapping=2, sequence=4, offset=2)  # the zoo's style: list items indented under their key
    return yaml


class Document:
    """A parsed YAML tree plus where it came from (file, and the source of each overridden key)."""

    def __init__(self, data: Any, source: str):
        self.data = data
        self.source = source
        self.override_sources: dict[tuple, str] = {}

    def locate(self, loc: tuple, key: bool = False) -> tuple[str, int | None, int | None]:
        """Source, line and column (1-based) of the deepest existing node on `loc` (of its key if `key`)."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.override_sources:
                return self.override_sources[loc[:n]], None, None
        node, line, col = self.data, None, None
        for depth, name in enumerate(loc, 1):
            if isinstance(node, CommentedMap) and name in node:
                child = node[name]
                if name in (node.lc.data or {}):  # keys added by overrides or wrappers have no position
                    kl, kc, vl, vc = node.lc.data[name]
                    at_key = (key and depth == len(loc)) or (isinstance(child, (CommentedMap, CommentedSeq)) and child)
                    line, col = (kl, kc) if at_key else (vl, vc)
                node = child
            elif isinstance(node, CommentedSeq) and isinstance(name, int) and 0 <= name < len(node):
                if node.lc.data and name in node.lc.data:
                    line, col = node.lc.data[name]
                node = node[name]
            else:
                break
        if line is None and hasattr(self.data, "lc"):
            line, col = self.data.lc.line, self.data.lc.col
        return self.source, None if line is None else line + 1, None if col is None else col + 1


def parse_yaml(text: str, source: str) -> Document:
    """Parse YAML text; syntax errors, duplicate keys and unsafe tags become a ConfigError with position."""
    try:
        data = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(filter(None, [e.context, e.problem])).strip() or str(e)
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        key = ""
        if mark is not None and mark.line < len(text.splitlines()):
            key = text.splitlines()[mark.line].strip().split(":", 1)[0].lstrip("- ")
        hint = " (check the indentation)" if "mapping values" in what or "expected <block end>" in what else ""
        raise ConfigError([Problem(source, line, col, key, f"invalid YAML: {what}{hint}")]) from None
    except YAMLError as e:
        raise ConfigError([Problem(source, None, None, "", f"invalid YAML: {e}")]) from None
    except TypeError:  # a mapping key that is itself a mapping holding a list: unhashable
        line, col = _complex_key(text)
        raise ConfigError([Problem(source, line, col, "", "invalid YAML: expected a plain key, got a key that is "
                                   "a mapping or a list (`? ` starts a complex key)")]) from None
    except RecursionError:
        raise ConfigError([Problem(source, None, None, "", "invalid YAML: nested too deeply")]) from None
    doc = Document(data, source)
    _check_expansion(doc)
    _reject_tags(data, doc)
    return doc


def _complex_key(text: str) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the first mapping key that is not a scalar."""
    todo = [_yaml().compose(io.StringIO(text))]
    while todo:
        node = todo.pop(0)
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if not isinstance(key, ScalarNode):
                    return key.start_mark.line + 1, key.start_mark.column + 1
                todo.append(value)
        elif isinstance(node, SequenceNode):
            todo += node.value
    return None, None


def _children(node: Any) -> Iterable[tuple[Any, Any]]:
    return node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()


def _check_expansion(doc: Document) -> None:
    """Refuse recursive aliases and documents that aliases expand past MAX_NODES values ("billion laughs").

    The loader shares an aliased node instead of copying it, so parsing is cheap; everything after it
    (validation, dumps) walks the expanded tree, for ever if a node contains itself. Sizes are counted
    once per shared node, so this is linear in the text.
    """
    sizes: dict[int, int] = {}
    inside: set[int] = set()

    def refuse(loc: tuple, message: str) -> None:
        src, line, col = doc.locate(loc, key=True)
        raise ConfigError([Problem(src, line, col, ".".join(map(str, loc)), message)])

    def size(node: Any, loc: tuple) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in inside:
            refuse(loc, "expected a tree, got an alias (*) of a node that contains it")
        if id(node) not in sizes:
            inside.add(id(node))
            sizes[id(node)] = 1 + sum(size(child, loc + (key,)) for key, child in _children(node))
            inside.discard(id(node))
            if sizes[id(node)] > MAX_NODES:
                refuse(loc, f"expected at most {MAX_NODES:,} values once aliases (*) are expanded, got "
                       f"{sizes[id(node)]:,} here (nested anchors and aliases)")
        return sizes[id(node)]

    size(doc.data, ())


def _reject_tags(node: Any, doc: Document, loc: tuple = ()) -> None:
    """Explicit tags (e.g. `!!python/object`) have no meaning in our documents: refuse them."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag and tag not in PLAIN_TAGS:
        src, line, col = doc.locate(loc)
        raise ConfigError([Problem(src, line, col, ".".join(map(str, loc)), f"expected plain YAML, got the tag {tag!r}")])
    for key, child in _children(node):
        _reject_tags(child, doc, loc + (key,))


def load_yaml(path: str | Path) -> Document:
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as e:
        raise ConfigError([Problem(str(path), None, None, "", f"cannot read file: {e.strerror}")]) from None
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError([Problem(str(path), line, col, "", f"expected UTF-8 text, got the byte 0x{raw[e.start]:02x}")]) from None
    return parse_yaml(text, str(path))


def dump_yaml(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def _parse_override(item: str, source: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError([Problem(source, None, None, "", f"expected an override as key.path=value, got {item!r}")])
    try:
        parsed = parse_yaml(value, f"{source} {item!r}").data if value.strip() else None
    except ConfigError as e:  # place the value's problems under the key it is for (a syntax error's own key is
        # a guess from the text of its line: here the value's text, no key)
        raise ConfigError([Problem(p.source, p.line, p.column, ".".join(filter(None, (
            key.strip(), None if p.message.startswith("invalid YAML") else p.path))), p.message)
            for p in e.problems]) from None
    return key.strip(), parsed


def apply_overrides(doc: Document, overrides: Overrides, source: str = "<override>") -> Document:
    """Set dotted keys (`model.num_blocks=6`, list items by index: `model.slstm_at.0=2`) in the tree.

    Values given as strings are parsed as YAML scalars/flow collections, like values in a file.
    """
    if not overrides:
        return doc
    pairs = overrides.items() if isinstance(overrides, Mapping) else (_parse_override(o, source) for o in overrides)
    problems = []
    for dotted, value in pairs:
        if "" in dotted.split("."):
            problems.append(Problem(source, None, None, dotted, "expected key names between the dots, got an empty one"))
            continue
        loc = tuple(int(p) if p.lstrip("-").isdigit() else p for p in dotted.split("."))
        node = doc.data
        for j, key in enumerate(loc[:-1]):
            if isinstance(node, dict):
                if not isinstance(node.get(key), (dict, list)):
                    if isinstance(loc[j + 1], int):  # an index into nothing: a mapping {0: ...} is no list
                        where = ".".join(map(str, loc[:j + 1]))
                        got = _describe(node[key]) if key in node else "nothing"
                        problems.append(Problem(source, None, None, dotted, f"expected {where} to be an existing "
                                                f"list to index, got {got} (set the whole list: {where}=[...])"))
                        break
                    node[key] = CommentedMap()
                    doc.override_sources[loc[:j + 1]] = source  # its problems are the override's
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
                node = node[key]
            else:
                problems.append(Problem(source, None, None, dotted, f"expected {'.'.join(map(str, loc[:j + 1]))} "
                                        "to be a mapping or an existing list index"))
                break
        else:
            last = loc[-1]
            if isinstance(node, list) and not (isinstance(last, int) and -len(node) <= last < len(node)):
                problems.append(Problem(source, None, None, dotted, f"expected a list index below {len(node)}"))
                continue
            node[last] = value
            doc.override_sources[loc] = source
    if problems:
        raise ConfigError(problems)
    return doc


_EXPECTED = {
    "missing": "expected this required key, got nothing",
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _unwrap(node: Any) -> Any:
    """Annotated[X, ...] -> X and Optional[X] -> X."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin is Union and len([a for a in typing.get_args(node) if a is not type(None)]) == 1:
            node = next(a for a in typing.get_args(node) if a is not type(None))
        else:
            return node


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _union_member(node: Any, label: Any) -> Any:
    """The member of a Union that pydantic's location label names: a `kind` tag ('xlstm-lm'), a class name,
    or a type such as 'list[int]'; None when unsure."""
    for member in typing.get_args(node):
        if _is_model(member) and ("kind" in member.model_fields and member.model_fields["kind"].default == label
                                  or member.__name__ == label):
            return member
        origin = typing.get_origin(member)
        if origin in (list, dict) and str(label).startswith(f"{origin.__name__}["):
            return member
    return None


def _walk(schema: type, loc: tuple) -> tuple[tuple, Any]:
    """Follow a pydantic error location through the schema: (the location without the labels pydantic puts
    after a union, such as the tag 'xlstm-lm' or 'list[int]', the schema node reached or None)."""
    out, node = [], schema
    for key in loc:
        node = _unwrap(node)
        if _is_model(node):
            out.append(key)
            field = node.model_fields.get(key)
            node = None if field is None else field.annotation
        elif typing.get_origin(node) is Union:
            node = _union_member(node, key)  # the key names a member: it is not a key of the document
        elif typing.get_origin(node) in (list, dict):
            out.append(key)
            node = typing.get_args(node)[-1]
        else:
            out.append(key)
            node = None
    return tuple(out), node


def _allowed_keys(schema: type, loc: tuple) -> list[str]:
    """Field names expected at `loc`, for did-you-mean hints."""
    node = _unwrap(_walk(schema, loc)[1])
    return list(node.model_fields) if _is_model(node) else []


def _problems(exc: ValidationError, doc: Document, schema: type, prefix: tuple) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        raw = tuple(err["loc"])
        loc = prefix + _walk(schema, raw)[0]
        cause = (err.get("ctx") or {}).get("error")
        kind = err["type"]
        if isinstance(cause, FieldErrors):
            problems += [_problem(doc, loc + sub, message) for sub, message in cause.items]
        elif kind == "extra_forbidden":
            close = difflib.get_close_matches(str(raw[-1]), _allowed_keys(schema, raw[:-1]), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(_problem(doc, loc, f"unknown key{hint}", key=True))
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            tags = (err.get("ctx") or {}).get("expected_tags") or _union_tags(schema, raw)
            got = err["input"].get("kind") if isinstance(err["input"], dict) else None
            close = difflib.get_close_matches(str(got), [t.strip(" '") for t in tags.split(",")], n=3, cutoff=0.3)
            hint = f" (did you mean {', '.join(close)}?)" if close and got is not None else ""
            problems.append(_problem(doc, loc + ("kind",), f"expected kind to be one of {tags}, got "
                                     f"{'nothing' if got is None else repr(got)}{hint}"))
        else:
            expected = _EXPECTED.get(kind) or err["msg"].replace("Input should be", "expected").replace(
                "Value error, ", "").replace("String should match pattern", "expected a string matching")
            got = "" if kind == "missing" else f", got {_describe(err['input'])}"
            if kind == "literal_error" and isinstance(err["input"], str):
                choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
                close = difflib.get_close_matches(err["input"], choices, n=3, cutoff=0.6)
                got += f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(_problem(doc, loc, expected + got))
    return _merge_alternatives(problems)


def _union_tags(schema: type, loc: tuple) -> str:
    """The `kind` tags of the union at `loc`, as pydantic lists them (it gives none when `kind` is absent)."""
    node = _unwrap(_walk(schema, loc)[1])
    return ", ".join(repr(a.model_fields["kind"].default) for a in typing.get_args(node)
                     if _is_model(a) and "kind" in a.model_fields)


def _merge_alternatives(problems: list[Problem]) -> list[Problem]:
    """One problem per value that matches no member of a union: `expected A or B, got X`."""
    merged: dict[tuple, Problem] = {}
    for p in problems:
        expected, sep, got = p.message.rpartition(", got ")
        value, _, hint = got.partition(" (did you mean ")
        key = (p.source, p.line, p.column, p.path, value) if sep and expected.startswith("expected ") else id(p)
        if key in merged:
            first, _, got = merged[key].message.rpartition(", got ")
            got = got if hint == "" else f"{value} (did you mean {hint}"
            p = Problem(p.source, p.line, p.column, p.path, f"{first} or {expected.removeprefix('expected ')}, got {got}")
        merged[key] = p
    return list(merged.values())


def _problem(doc: Document, loc: tuple, message: str, key: bool = False) -> Problem:
    source, line, col = doc.locate(loc, key=key)
    return Problem(source, line, col, ".".join(map(str, loc)), message)


def validate_document(schema: type, doc: Document, prefix: tuple = ()):
    """Validate `doc` against a pydantic class; raise one ConfigError listing every problem."""
    data = doc.data
    for key in prefix:
        data = data[key] if isinstance(data, dict) and key in data else data
    if not isinstance(data, dict):
        src, line, col = doc.locate(prefix)
        got = "an empty document" if data is None and not prefix else _describe(data)
        raise ConfigError([Problem(src, line, col, ".".join(map(str, prefix)), f"expected a mapping, got {got}")])
    try:
        return schema.model_validate(_plain(data))
    except ValidationError as exc:
        problems = _problems(exc, doc, schema, prefix)
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise ConfigError(problems) from None


def _plain(node: Any) -> Any:
    """ruamel containers -> plain dicts and lists (pydantic validates plain data)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, (str, int)) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
