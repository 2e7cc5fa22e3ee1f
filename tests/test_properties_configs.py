"""Property-based: any edit a user makes to a shipped YAML, and any override on the command line, either
validates (and builds on meta) or is refused by a ConfigError that places each problem.

Seeds: derandomized (Hypothesis derives every example from the test's name), so CI runs the same examples
each time; example counts and deadlines are set on each test below (deadlines are hang guards, loose for a
loaded 2-core CI machine: an example takes milliseconds to a few hundred).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.cli import document_kind, main
from xlstm_zoo.registry.index import ZOO_DIR
from xlstm_zoo.registry.pipelines.recipes import load_recipe
from xlstm_zoo.schemas import ConfigError
from xlstm_zoo.schemas.base import MAX_BLOCKS, MAX_FACTOR, MAX_VOCAB, MAX_WIDTH
from xlstm_zoo.schemas.export import DOCUMENTS
from xlstm_zoo.schemas.yaml_io import dump_yaml, load_yaml, validate_document

PROFILE = dict(derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FILES = sorted(ZOO_DIR.glob("*.yaml")) + sorted((ZOO_DIR / "recipes").glob("*.yaml"))
CHEAP = ["formal-lang-small", "xlstm-125m", "xlstm-7b", "xlstm-350m-7-1"]  # meta builds in < 0.2 s

# Values a user might type: at and past every bound, wrong types, odd numbers.
BOUNDS = [0, -1, 1, 2, 3, 7, 64, MAX_BLOCKS, MAX_BLOCKS + 1, MAX_WIDTH, MAX_WIDTH + 1, MAX_VOCAB, MAX_VOCAB + 1,
          MAX_FACTOR, MAX_FACTOR + 0.5, 2**31, 2**40, 2**63, -(2**63)]
VALUES = st.one_of(
    st.sampled_from(BOUNDS), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1e-9, 1e308, -0.0]),
    st.text(max_size=8), st.sampled_from(["all", "xlstm-lm", "mlstm-block", "fused", "1e3", "0x10", ""]),
    st.booleans(), st.none(), st.lists(st.integers(-3, 40), max_size=4), st.just({"x": 1}), st.just([{}]),
)
DAMAGE = [":", " :", "- ", "\t", "  ", "&a ", "*a", "*nope", "[", "]", "{", "}", "'", '"', "\n", "#", "%YAML 1.1\n",
          "!!python/object/apply:os.system ['true'] ", "!!binary ", "@", "`", "|", ">", ",", "? ", "<<: ", "\\"]


def nodes(tree, loc=()):
    """Every key path of a parsed document (mappings and lists included)."""
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in items:
        out.append(loc + (key,))
        out += nodes(child, loc + (key,))
    return out


def parent_of(tree, loc):
    for key in loc[:-1]:
        tree = tree[key]
    return tree


def typo(key: str, data) -> str:
    i = data.draw(st.integers(0, max(0, len(key) - 1)))
    how = data.draw(st.sampled_from(["drop", "double", "swap", "case", "char"]))
    if how == "drop":
        return key[:i] + key[i + 1:] or "x"
    if how == "double":
        return key[:i] + key[i:i + 1] * 2 + key[i + 1:]
    if how == "swap" and len(key) > 1:
        i = min(i, len(key) - 2)
        return key[:i] + key[i + 1] + key[i] + key[i + 2:]
    if how == "case":
        return key.upper()
    return key[:i] + data.draw(st.sampled_from("_-.aez0 ")) + key[i + 1:]


def edit_tree(tree, data) -> None:
    """One edit of the parsed document: a new value, a deletion, an unknown or misspelt key."""
    loc = data.draw(st.sampled_from(nodes(tree)))
    parent, key = parent_of(tree, loc), loc[-1]
    how = data.draw(st.sampled_from(["value", "value", "delete", "unknown", "typo"]))
    if how == "value":
        parent[key] = data.draw(VALUES)
    elif how == "delete":
        del parent[key]
    elif isinstance(parent, CommentedMap) and how == "unknown":
        parent[data.draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))] = data.draw(VALUES)
    elif isinstance(parent, CommentedMap):
        parent[typo(str(key), data)] = parent.pop(key)
    elif isinstance(parent, CommentedSeq):
        parent.append(data.draw(VALUES))


def damage_text(text: str, data) -> str:
    """YAML syntax damage: a character sequence inserted, a span deleted, a line re-indented or doubled."""
    lines = text.splitlines(keepends=True)
    how = data.draw(st.sampled_from(["insert", "delete", "indent", "double"]))
    if how in ("indent", "double"):
        i = data.draw(st.integers(0, len(lines) - 1))
        lines[i] = (" " * data.draw(st.integers(1, 3)) + lines[i]) if how == "indent" else lines[i] * 2
        return "".join(lines)
    i = data.draw(st.integers(0, len(text)))
    if how == "insert":
        return text[:i] + data.draw(st.sampled_from(DAMAGE)) + text[i:]
    return text[:i] + text[i + data.draw(st.integers(1, 40)):]


def check_file(path: Path) -> str:
    """Validate (and for entries build on meta); refusals must place every problem in the file."""
    kind = document_kind(str(path))
    try:
        if kind == "zoo-entry":
            validate_document(DOCUMENTS[kind], load_yaml(path))
            build_model(str(path), device="meta")
        else:
            recipe = load_recipe(path)
            build_model(recipe.model.name, overrides=recipe.model.overrides, device="meta")
    except ConfigError as e:
        assert e.problems
        for p in e.problems:
            assert p.source == str(path), p
            assert p.line is not None and p.column is not None, f"no position: {p}"
        return "refused"
    return "valid"


def edited_copy(tmp: Path, source: Path, data, syntax: bool) -> Path:
    text = source.read_text()
    if syntax:
        text = damage_text(text, data)
    else:
        tree = load_yaml(source).data
        for _ in range(data.draw(st.integers(1, 2))):
            if nodes(tree):
                edit_tree(tree, data)
        header = text.splitlines(keepends=True)[0]  # the $schema comment says which document kind it is
        text = header + dump_yaml(tree)
    dest = tmp / source.relative_to(ZOO_DIR)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("edits")


@settings(max_examples=150, deadline=30000, **PROFILE)
@given(data=st.data())
def test_edited_entries_and_recipes_validate_and_build_or_are_refused_at_a_position(scratch, data):
    source = data.draw(st.sampled_from(FILES), label="file")
    event(check_file(edited_copy(scratch, source, data, syntax=data.draw(st.booleans(), label="syntax"))))


@settings(max_examples=30, deadline=5000, **PROFILE)
@given(data=st.data())
def test_validate_verb_answers_without_a_traceback(scratch, data, capsys):
    path = edited_copy(scratch, data.draw(st.sampled_from(FILES)), data, syntax=data.draw(st.booleans()))
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code in (0, 1) and "Traceback" not in out + err
    assert (code == 0) == ("valid" in out)


def test_validate_verb_in_a_fresh_process_answers_promptly_without_a_traceback(tmp_path):
    """A few edits through the console script (the in-process test above covers the rest)."""
    path = tmp_path / "xlstm-125m.yaml"
    text = (ZOO_DIR / "xlstm-125m.yaml").read_text()
    for edited in (text.replace("num_blocks: 24", "num_blocks: 1099511627776"),
                   text.replace("  embedding_dim: 768", "   embedding_dim: 768"),
                   text.replace("kind: xlstm-lm", "kind: xlstm-lmm")):
        path.write_text(edited)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "xlstm_zoo.registry.cli", "validate", str(path)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=30)
        elapsed = time.perf_counter() - start
        assert run.returncode == 1 and "Traceback" not in run.stderr and f"{path}:" in run.stderr, run.stderr
        assert elapsed < 10, f"validate took {elapsed:.1f} s"  # a hang guard; typically ~1 s with interpreter start


def override_keys(name: str) -> list[str]:
    tree = load_yaml(ZOO_DIR / f"{name}.yaml").data
    return [".".join(map(str, loc)) for loc in nodes(tree) if loc[0] == "model"]


OVERRIDE_VALUE = st.one_of(VALUES.map(lambda v: dump_yaml(v).strip().removesuffix("...").strip()),
                           st.text(":-[]{}&*!|>'\"#, 0aZ.=", max_size=10))


def overrides(data, name: str) -> list[str]:
    keys = st.one_of(st.sampled_from(override_keys(name)), st.text("model.abcdefghijklmnopqrstuvwxyz_0123", max_size=20))
    return [f"{data.draw(keys)}={data.draw(OVERRIDE_VALUE)}" for _ in range(data.draw(st.integers(1, 2)))]


def answered(argv: list[str], capsys) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2) and "Traceback" not in out + err
    if code == 2:
        assert err.strip(), "a refusal prints why"


@settings(max_examples=40, deadline=30000, **PROFILE)
@given(data=st.data())
def test_overrides_on_show_and_build_are_applied_or_refused_naming_the_key(data, capsys):
    name = data.draw(st.sampled_from(CHEAP))
    items = overrides(data, name)
    verb = data.draw(st.sampled_from([["show", name], ["build", name, "--dry-run"]]))
    answered(verb + items, capsys)
    try:
        build_model(name, overrides=items, device="meta")
    except ConfigError as e:
        assert all(p.path or "key.path=value" in p.message for p in e.problems), e


@settings(max_examples=20, deadline=30000, **PROFILE)
@given(data=st.data())
def test_overrides_on_train_resolve_the_recipe_and_model_or_are_refused(data, capsys, tmp_path_factory):
    """Up to the start of training: the recipe and its model are resolved (on meta), nothing is trained."""
    recipe = data.draw(st.sampled_from(sorted((ZOO_DIR / "recipes").glob("*.yaml"))))
    tree = load_yaml(recipe).data
    keys = [".".join(map(str, loc)) for loc in nodes(tree)]
    items = [f"{data.draw(st.sampled_from(keys))}={data.draw(OVERRIDE_VALUE)}" for _ in range(data.draw(st.integers(1, 2)))]

    def resolve_only(recipe, out, resume):
        build_model(recipe.model.name, overrides=recipe.model.overrides, device="meta")
        return {}

    with mock.patch("xlstm_zoo.registry.pipelines.train.train", resolve_only):
        answered(["train", str(recipe), *items, "--out", str(tmp_path_factory.mktemp("run"))], capsys)
