"""A user's edited copy of an entry: every problem at once, each as FILE:LINE:COL: key.path: message."""

import re

import pytest

from xlstm_zoo.registry.cli import main
from xlstm_zoo.schemas import ConfigError, ZooEntry
from xlstm_zoo.schemas.yaml_io import load_yaml, parse_yaml, validate_document


@pytest.fixture
def mine(tmp_path):
    path = tmp_path / "mine.yaml"
    assert main(["cp", "xlstm-125m", str(path)]) == 0
    return path


def line_of(path, text):
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def problems(path):
    with pytest.raises(ConfigError) as e:
        validate_document(ZooEntry, load_yaml(path))
    return str(e.value).splitlines()


def test_wrong_type_typo_and_negative_size_all_reported(mine):
    edit(mine, "embedding_dim: 768", "embedding_dim: wide")
    edit(mine, "num_blocks: 24", "num_block: 24")
    edit(mine, "qkv_proj_blocksize: 4", "qkv_proj_blocksize: -4")
    lines = problems(mine)
    f = str(mine)
    assert f"{f}:{line_of(mine, 'embedding_dim')}:18: model.embedding_dim: expected an integer, got 'wide'" in lines
    assert f"{f}:{line_of(mine, 'num_block:')}:3: model.num_block: unknown key (did you mean num_blocks" in \
        next(line for line in lines if "num_block:" in line or "model.num_block: unknown" in line)[:len(f) + 80]
    assert any(line.startswith(f"{f}:{line_of(mine, 'qkv_proj_blocksize')}:")
               and "model.mlstm_block.mlstm.qkv_proj_blocksize: expected greater than or equal to 1, got -4" in line
               for line in lines)
    assert any("model.num_blocks: expected this required key" in line for line in lines)


def test_broken_indent_names_file_line_and_key(mine):
    edit(mine, "  tie_weights: false", "   tie_weights: false\n    oops: 1")
    (line,) = problems(mine)
    assert re.match(rf"{re.escape(str(mine))}:\d+:\d+: (tie_weights|oops): invalid YAML", line)


def test_cross_field_errors_point_at_the_key(mine):
    edit(mine, "  num_blocks: 24", "  num_blocks: 24\n  slstm_at: [3, 30]")
    lines = problems(mine)
    assert any(line.startswith(f"{mine}:{line_of(mine, 'slstm_at')}:") and "model.slstm_at.1: expected a block index"
               in line for line in lines)
    assert any("model.slstm_block: expected an slstm_block template" in line for line in lines)


def test_duplicate_keys_and_python_tags_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"x\.yaml:3:1: .*duplicate key"):
        parse_yaml("a: 1\nb: 2\na: 3\n", "x.yaml")
    marker = tmp_path / "pwned"
    text = f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ConfigError, match="y.yaml:1:1: model: expected plain YAML, got the tag"):
        parse_yaml(text, "y.yaml")
    assert not marker.exists()


def test_unknown_kind_suggests(tmp_path, mine):
    edit(mine, "kind: xlstm-lm", "kind: xlstm-lmm")
    (line,) = [line for line in problems(mine) if "model.kind" in line]
    assert "did you mean xlstm-lm" in line


def test_validate_cli_lists_all_files_problems(mine, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text(mine.read_text().replace("vocab_size: 50304", "vocab_size: -1"))
    edit(mine, "context_length: 2048", "context_length: long")
    assert main(["validate", str(mine), str(other)]) == 1
    err = capsys.readouterr().err
    assert f"{mine}:" in err and "model.context_length" in err and f"{other}:" in err and "model.vocab_size" in err
