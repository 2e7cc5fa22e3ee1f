"""NX-AI xlstm (NeurIPS) checkpoints converted with `xlstm-zoo convert --from nx-ai` give NX-AI's logits.

The references were computed by NX-AI's own model (tests/fixtures/make_nxai_fixtures.py, run in a
separate venv); `mixed` stores its sLSTM cells in the vanilla layout (.safetensors), `cuda_layout` in
the CUDA layout (.pt), with a tied head, biases and an sLSTM block without conv.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.checkpoints.convert import main as convert_main
from xlstm_zoo.registry.checkpoints.hf import ConfigMappingError
from xlstm_zoo.registry.checkpoints.nxai import from_nxai_config

FIXTURES = Path(__file__).parent / "fixtures" / "nxai"
CASES = {"mixed": "model.safetensors", "cuda_layout": "model.pt"}


def convert(tmp_path: Path, name: str, config: Path | None = None) -> tuple[int, Path]:
    out = tmp_path / f"{name}-zoo"
    argv = ["--from", "nx-ai", "--config", str(config or FIXTURES / name / "config.yaml"),
            "--weights", str(FIXTURES / name / CASES[name]), "--out", str(out)]
    return convert_main(argv), out


@pytest.mark.parametrize("name", CASES)
def test_converted_model_gives_nxai_logits(tmp_path, name):
    code, out = convert(tmp_path, name)
    assert code == 0
    model = build_model(f"local-dir:{out}")
    assert model.config.kind == "xlstm-lm" and model.config.slstm_positions()
    reference = load_file(FIXTURES / name / "reference.safetensors")
    with torch.no_grad():
        logits = model(reference["input_ids"]).logits
    expected = reference["logits"]
    assert ((logits - expected).abs().max() / expected.abs().max()).item() < 1e-4


def test_wrong_slstm_layout_is_refused(tmp_path, capsys):
    """The CUDA-layout weights with a config that says vanilla: refused, never loaded silently."""
    config = tmp_path / "config.yaml"
    config.write_text((FIXTURES / "cuda_layout" / "config.yaml").read_text().replace("backend: cuda", "backend: vanilla"))
    code, out = convert(tmp_path, "cuda_layout", config)
    assert code == 1 and not (out / "model.safetensors").exists()
    assert "layout of the other sLSTM backend" in capsys.readouterr().err


def test_config_mapping():
    base = {"vocab_size": 11, "embedding_dim": 16, "num_blocks": 2, "context_length": -1, "slstm_at": [1],
            "mlstm_block": {"mlstm": {"num_heads": 2, "context_length": 99, "_num_blocks": 2}},
            "slstm_block": {"slstm": {"backend": "cuda", "num_heads": 2, "dtype": "bfloat16"},
                            "feedforward": {"proj_factor": 1.3, "act_fn": "gelu", "ff_type": "ffn_gated"}}}
    config = from_nxai_config(base)
    assert config.mlstm_block.mlstm.num_heads == 2 and config.slstm_at == [1]
    assert from_nxai_config({k: v for k, v in base.items() if k != "mlstm_block"}).slstm_at == "all"
    with pytest.raises(ConfigMappingError, match="mlstm_block.mlstm.qkv_blocksize"):
        from_nxai_config({**base, "mlstm_block": {"mlstm": {"qkv_blocksize": 4}}})
    with pytest.raises(ConfigMappingError, match="feedforward.bias"):
        from_nxai_config({**base, "slstm_block": {"feedforward": {"bias": True}}})


def test_cli_errors_name_the_problem(tmp_path, capsys):
    tagged = tmp_path / "config.yaml"
    tagged.write_text("vocab_size: !!python/object/apply:os.system ['touch pwned']\n")
    shutil.copy(FIXTURES / "mixed" / "model.safetensors", tmp_path / "w.safetensors")
    code = convert_main(["--from", "nx-ai", "--config", str(tagged), "--weights", str(tmp_path / "w.safetensors"),
                         "--out", str(tmp_path / "out")])
    assert code == 1 and "config.yaml:1" in capsys.readouterr().err
    assert not Path("pwned").exists()
