"""Registry, builder and CLI: listing without torch, exact parameter counts, overrides, errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xlstm_zoo import build_model, get_config, get_entry, list_models
from xlstm_zoo.registry.cli import main
from xlstm_zoo.registry.index import UnknownModelError
from xlstm_zoo.schemas import ConfigError

PAPER_COUNTS = {  # arXiv 2405.04517 Table 7 sizes, counted as NX-AI's code does (untied, vocab 50304)
    "xlstm-125m": 163_806_144, "xlstm-350m": 409_290_112, "xlstm-760m": 840_427_392,
    "xlstm-1.3b": 1_422_559_616, "xlstm-125m-7-1": 163_690_928, "xlstm-7b": 6_865_424_896,
}


def run_python(code: str) -> str:
    """Run code in a fresh interpreter outside the repository (so the checkout is not on sys.path)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    return out.stdout.strip()


def test_listing_and_validation_do_not_import_torch():
    code = ("import sys, xlstm_zoo; from xlstm_zoo import list_models, get_entry, get_config;"
            "names = list_models('xlstm-*'); get_entry('xlstm-7b'); get_config('xlstm-125m');"
            "from xlstm_zoo.registry.cli import main; main(['validate'] + [str(p) for p in "
            "__import__('xlstm_zoo.registry.index', fromlist=['x']).entry_paths().values()]);"
            "print(len(names), 'torch' in sys.modules)")
    assert run_python(code).splitlines()[-1] == f"{len(list_models('xlstm-*'))} False"


@pytest.mark.parametrize("name,count", sorted(PAPER_COUNTS.items()))
def test_parameter_counts_on_meta(name, count):
    model = build_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == count
    assert all(p.is_meta for p in model.parameters())


def test_list_models_patterns():
    assert list_models("xlstm-125m*") == ["xlstm-125m", "xlstm-125m-7-1"]
    assert "xlstm-7b" in list_models(["xlstm-7*", "formal-*"])
    assert "xlstm-350m" not in list_models("xlstm-*", exclude="*350m*")
    assert list_models(pretrained=True) == ["vil-base", "vil-digits", "vil-small", "vil-tiny", "xlstm-7b"]
    assert set(list_models()) >= {"formal-lang-small", "xlstm-7b", "xlstm-1.3b-7-1"}


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean xlstm-125m"):
        get_entry("xlstm-12m")
    with pytest.raises(ValueError, match="local-dir:"):
        build_model(str(Path(__file__).parent))
    with pytest.raises(ValueError, match="hf-hub:NX-AI/xLSTM-7b"):
        build_model("NX-AI/xLSTM-7b")


def test_overrides_dict_and_list_forms():
    assert get_config("xlstm-125m", {"model.num_blocks": 6}).num_blocks == 6
    cfg = get_config("xlstm-125m-7-1", ["model.num_blocks=6", "model.slstm_at=[1, 3]", "model.embedding_dim=128"])
    assert (cfg.num_blocks, cfg.slstm_at, cfg.embedding_dim) == (6, [1, 3], 128)
    model = build_model("xlstm-125m-7-1", overrides=["model.num_blocks=2", "model.slstm_at=[1]",
                                                     "model.embedding_dim=64", "model.vocab_size=20"])
    assert type(model.xlstm_block_stack.blocks[1].xlstm).__name__ == "SLSTMLayer"
    assert model(torch.zeros(1, 3, dtype=torch.long)).logits.shape == (1, 3, 20)


def test_bad_overrides_are_reported_like_file_errors():
    with pytest.raises(ConfigError) as e:
        get_config("xlstm-125m", ["model.num_blocks=abc", "model.mlstm_block.mlstm.num_head=3"])
    lines = str(e.value).splitlines()
    assert "<override>: model.num_blocks: expected an integer, got 'abc'" in lines
    assert any("model.mlstm_block.mlstm.num_head: unknown key (did you mean num_heads" in line for line in lines)
    with pytest.raises(ConfigError, match="key.path=value"):
        get_config("xlstm-125m", ["model.num_blocks"])


def test_yaml_files_and_config_objects_build(tmp_path):
    cfg = get_config("formal-lang-small")
    assert build_model(cfg).config == cfg
    bare = tmp_path / "bare.yaml"
    bare.write_text("kind: xlstm-large-lm\nvocab_size: 10\nembedding_dim: 16\nnum_blocks: 1\nnum_heads: 2\n")
    assert build_model(str(bare)).config.embedding_dim == 16


def test_show_cp_build_cli(tmp_path, capsys):
    assert main(["show", "xlstm-7b"]) == 0
    shown = capsys.readouterr().out
    assert "chunkwise_kernel: chunkwise--auto" in shown and "embedding_dim: 4096" in shown
    assert main(["build", "xlstm-7b", "--dry-run", "--dtype", "bfloat16"]) == 0
    assert "6,865,424,896 parameters, 12.79 GiB" in capsys.readouterr().out
    dest = tmp_path / "mine.yaml"
    assert main(["cp", "xlstm-125m", str(dest)]) == 0
    text = dest.read_text()
    original = Path(get_entry.__globals__["entry_paths"]()["xlstm-125m"]).read_text()
    assert text.splitlines()[1:] == original.splitlines()[1:]  # comments and layout kept
    schema_ref = text.splitlines()[0].split("$schema=")[1]
    assert (dest.parent / schema_ref).resolve().name == "zoo-entry.schema.json"
    assert (dest.parent / schema_ref).exists()
    assert main(["validate", str(dest)]) == 0


def test_cli_user_errors_exit_nonzero_without_traceback():
    env = {**os.environ, "PYTHONPATH": ""}
    for argv in (["show", "xlstm-12m"], ["validate", "/nonexistent.yaml"], ["build", "xlstm-7b", "--dry-run",
                                                                           "model.num_blocks=-1"]):
        out = subprocess.run([sys.executable, "-m", "xlstm_zoo.registry.cli", *argv], capture_output=True,
                             text=True, cwd="/", env=env)
        assert out.returncode != 0
        assert "Traceback" not in out.stderr and out.stderr.strip()
