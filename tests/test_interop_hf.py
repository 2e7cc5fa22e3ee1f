"""transformers' xLSTM both ways: its directories load here with the same logits and greedy output, and
our save_pretrained output loads back in transformers with the same logits."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from transformers import xLSTMConfig, xLSTMForCausalLM

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.checkpoints import load_checkpoint, save_pretrained
from xlstm_zoo.registry.checkpoints.convert import main as convert_main
from xlstm_zoo.registry.checkpoints.hf import ConfigMappingError, from_hf_config
from xlstm_zoo.xlstm.generation import generate

# transformers sizes its cache with qk/v dims rounded up to 64 but its layers with int(D * factor)
# (trap 34), so only shapes where the two agree run in transformers itself.
SHAPES = {
    "base": dict(hidden_size=128, num_heads=2, num_hidden_layers=2),
    "bias-4heads": dict(hidden_size=128, num_heads=4, num_hidden_layers=3, use_bias=True, ffn_proj_factor=2.6667),
    "narrow-qk-tied": dict(hidden_size=256, num_heads=4, num_hidden_layers=1, qk_dim_factor=0.25,
                           v_dim_factor=0.5, tie_word_embeddings=True, gate_soft_cap=5.0),
}
VOCAB = 67


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


def make_hf(tmp_path, seed: int = 0, **shape) -> tuple[xLSTMForCausalLM, str]:
    """A random transformers xLSTM, every weight perturbed (its init zeroes the gates), saved by transformers."""
    torch.manual_seed(seed)
    config = xLSTMConfig(vocab_size=VOCAB, chunk_size=16, eos_token_id=None, pad_token_id=None, bos_token_id=None,
                         **shape)
    model = xLSTMForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    directory = tmp_path / "hf"
    model.save_pretrained(directory)
    return model, str(directory)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_logits_generation_and_round_trip(tmp_path, shape):
    hf, hf_dir = make_hf(tmp_path, **shape)
    ours = build_model(f"local-dir:{hf_dir}")
    assert not any(p.is_meta for p in ours.parameters())
    ids = torch.randint(0, VOCAB, (2, 37))  # two full chunks of 16 and a remainder
    with torch.no_grad():
        expected = hf(ids).logits
        assert rel_err(expected, ours(ids).logits) < 1e-4

    prompt = ids[:, :6]
    reference = hf.generate(prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(generate(ours, prompt, 12), reference)
    assert torch.equal(ours.generate(prompt, 12), reference)

    save_pretrained(ours, tmp_path / "zoo")
    back = xLSTMForCausalLM.from_pretrained(tmp_path / "zoo").eval()
    with torch.no_grad():
        assert rel_err(expected, back(ids).logits) < 1e-4


def fuse(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' single-mode weights in its fused layout: [q;k;v;o], [i;f], [gate;up]."""
    out = {}
    for name, tensor in state.items():
        prefix, _, leaf = name.rpartition(".")
        if prefix.endswith("mlstm_layer.q"):
            layer = prefix[: -len("q")]
            out[layer + "qkv_opreact." + leaf] = torch.cat(
                [state[f"{layer}{p}.{leaf}"] for p in ("q", "k", "v", "ogate_preact")])
        elif prefix.endswith("igate_preact"):
            layer = prefix[: -len("igate_preact")]
            out[layer + "ifgate_preact." + leaf] = torch.cat([tensor, state[f"{layer}fgate_preact.{leaf}"]])
        elif prefix.endswith("ffn.proj_up_gate"):
            ffn = prefix[: -len("proj_up_gate")]
            out[ffn + "proj_up_gate_z." + leaf] = torch.cat([tensor, state[f"{ffn}proj_up.{leaf}"]])
        elif not prefix.endswith(("mlstm_layer.k", "mlstm_layer.v", "ogate_preact", "fgate_preact", "ffn.proj_up")):
            out[name] = tensor
    return out


def test_fused_transformers_directory(tmp_path):
    """A fused-mode directory (transformers cannot build one itself: its fused init crashes) loads
    into our fused model and matches the single-mode transformers model; each layout also loads into
    the other weight mode (converted after loading)."""
    hf, hf_dir = make_hf(tmp_path, seed=1, **SHAPES["base"])
    ids = torch.randint(0, VOCAB, (3, 21))
    with torch.no_grad():
        expected = hf(ids).logits
        as_fused = build_model(f"local-dir:{hf_dir}", overrides={"model.weight_mode": "fused"})
        assert "backbone.blocks.0.mlstm_layer.qkv_opreact.weight" in as_fused.state_dict()
        assert rel_err(expected, as_fused(ids).logits) < 1e-4
        weights = tmp_path / "hf" / "model.safetensors"
        save_file(fuse(load_file(weights)), weights, metadata={"format": "pt"})
        config = json.loads((tmp_path / "hf" / "config.json").read_text())
        (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "weight_mode": "fused"}))
        ours = build_model(f"local-dir:{hf_dir}")
        assert ours.config.weight_mode == "fused"
        assert rel_err(expected, ours(ids).logits) < 1e-4
        as_single = build_model(f"local-dir:{hf_dir}", overrides=["model.weight_mode=single"])
        assert as_single.config.weight_mode == "single"
        assert rel_err(expected, as_single(ids).logits) < 1e-4
        # a fused model saves the single layout (config.json says so): transformers loads it, we load it fused
        save_pretrained(ours, tmp_path / "saved")
        assert json.loads((tmp_path / "saved" / "config.json").read_text())["weight_mode"] == "single"
        assert "backbone.blocks.0.mlstm_layer.q.weight" in load_file(tmp_path / "saved" / "model.safetensors")
        assert rel_err(expected, xLSTMForCausalLM.from_pretrained(tmp_path / "saved").eval()(ids).logits) < 1e-4
        again = build_model(f"local-dir:{tmp_path / 'saved'}")
        assert again.config.weight_mode == "fused" and rel_err(expected, again(ids).logits) < 1e-4
        into_built = build_model({"model": {**again.config.model_dump(), "weight_mode": "fused"}})
        load_checkpoint(into_built, tmp_path / "saved")  # the public loader converts too
        assert rel_err(expected, into_built(ids).logits) < 1e-4


def test_convert_cli_from_hf(tmp_path, capsys):
    hf, hf_dir = make_hf(tmp_path, seed=2, **SHAPES["base"])
    assert convert_main(["--from", "hf", "--model", hf_dir, "--out", str(tmp_path / "zoo")]) == 0
    assert (tmp_path / "zoo" / "zoo.yaml").is_file()
    ours = build_model(f"local-dir:{tmp_path / 'zoo'}")
    ids = torch.randint(0, VOCAB, (1, 19))
    with torch.no_grad():
        assert rel_err(hf(ids).logits, ours(ids).logits) < 1e-4
    # --dtype takes every name build and lm-eval take (one list: schemas.kernels.DTYPES)
    assert convert_main(["--from", "hf", "--model", hf_dir, "--out", str(tmp_path / "f64"), "--dtype", "float64"]) == 0
    wide = build_model(f"local-dir:{tmp_path / 'f64'}")
    assert {p.dtype for p in wide.parameters()} == {torch.float64}
    with torch.no_grad():
        assert rel_err(ours(ids).logits.double(), wide(ids).logits) < 1e-5
    assert convert_main(["--from", "hf", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_config_mapping_refuses_what_it_cannot_keep():
    base = xLSTMConfig(vocab_size=VOCAB, **SHAPES["base"]).to_dict()
    assert from_hf_config(base).embedding_dim == 128
    with pytest.raises(ConfigMappingError, match="model_type"):
        from_hf_config({**base, "model_type": "llama"})
    with pytest.raises(ConfigMappingError, match="rope_theta"):
        from_hf_config({**base, "rope_theta": 1e4})
    with pytest.raises(ConfigMappingError, match="hidden_size and embedding_dim disagree"):
        from_hf_config({**base, "embedding_dim": 64})
    minimal = from_hf_config({"model_type": "xlstm"})  # transformers' defaults: the 7B
    assert (minimal.embedding_dim, minimal.num_blocks, minimal.vocab_size, minimal.ffn_dim) == (4096, 32, 50304, 10944)


def test_models_transformers_cannot_run_are_not_exported_as_its_xlstm(tmp_path):
    config = from_hf_config(xLSTMConfig(vocab_size=VOCAB, **SHAPES["base"]).to_dict())
    model = build_model(config.model_copy(update={"output_logit_soft_cap": None}))
    save_pretrained(model, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "xlstm_zoo"
    assert written["transformers_incompatible"] == ["output_logit_soft_cap: null (no cap) has no transformers equivalent"]
    with pytest.raises(Exception, match="output_logit_soft_cap"):  # refused, not run with a cap
        xLSTMForCausalLM.from_pretrained(tmp_path)
    assert build_model(f"local-dir:{tmp_path}").config.output_logit_soft_cap is None
