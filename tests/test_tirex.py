"""The `tirex` forecaster and `xlstm-zoo convert --from tirex` against NX-AI's own tirex-ts.

tests/fixtures/tirex/ was made by tests/fixtures/make_tirex_fixtures.py in a separate venv with tirex-ts
1.4.2: a small random TiRexZero saved as the published NX-AI/TiRex `model.ckpt` is, a context with
missing values, a constant series and a short (NaN-padded) one, and tirex's quantiles for 10 steps
(2.5 patches: a cut last patch), one patch per forward and three at once.

Tolerances: tirex's torch backend runs the sLSTM recurrence in bfloat16; ours runs it in float32. Against
the fixture's float32-recurrence outputs (same tirex model, bf16 casts left out) we match to 1e-5 of the
outputs' scale (float32 rounding); against its published bf16 path to 1e-2 of the scale (bf16 keeps 8
mantissa bits, and the recurrence compounds them over the patches: the measured gap is 0.4%).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.checkpoints.convert import main as convert_main
from xlstm_zoo.registry.checkpoints.hf import ConfigMappingError
from xlstm_zoo.registry.checkpoints.tirex import from_tirex_hparams
from xlstm_zoo.schemas import ConfigError
from xlstm_zoo.schemas.yaml_io import load_yaml, validate_document
from xlstm_zoo.schemas.entry import ModelDocument

FIXTURES = Path(__file__).parent / "fixtures" / "tirex"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("tirex") / "zoo"
    assert convert_main(["--from", "tirex", "--weights", str(FIXTURES / "model.ckpt"), "--out", str(out)]) == 0
    return build_model(f"local-dir:{out}")


@pytest.mark.parametrize("rollout", [1, 3])
def test_converted_checkpoint_gives_tirex_quantiles(converted, rollout):
    reference = load_file(FIXTURES / "reference.safetensors")
    with torch.no_grad():
        ours = converted(reference["context"], 10, patches_per_step=rollout).transpose(1, 2)  # (B, L, Q) as tirex
    for key, tolerance in ((f"quantiles_r{rollout}_fp32", 1e-5), (f"quantiles_r{rollout}", 1e-2)):
        expected = reference[key]
        scale = expected.abs().max()
        assert (ours - expected).abs().max() <= tolerance * scale, key
    assert torch.isfinite(ours).all()


def test_converted_config_comes_from_the_checkpoint(converted):
    c = converted.config
    assert (c.kind, c.input_patch_size, c.embedding_dim, c.num_blocks, c.slstm.num_heads, c.context_length) == \
        ("tirex", 4, 32, 2, 4, 32)
    assert c.ffn_dim == 128 and c.input_ff_dim == 48 and len(c.quantiles) == 9


def test_rollout_modes_differ_and_cut_to_length(converted):
    """One patch per forward pads the window afresh each time, so it is not the three-at-once result."""
    context = load_file(FIXTURES / "reference.safetensors")["context"]
    with torch.no_grad():
        one, three = converted(context, 10, 1), converted(context, 10, 3)
    assert one.shape == three.shape == (4, 9, 10)
    torch.testing.assert_close(one[..., :4], three[..., :4])  # the first patch is the same forward
    assert not torch.allclose(one[..., 4:], three[..., 4:])


def test_missing_values_are_masked_not_zeroed(converted):
    context = load_file(FIXTURES / "reference.safetensors")["context"][:1]
    zeroed = torch.nan_to_num(context)
    with torch.no_grad():
        assert not torch.allclose(converted(context, 4), converted(zeroed, 4))


def test_bad_hyper_parameters_name_the_key():
    good = torch.load(FIXTURES / "model.ckpt", weights_only=True)["hyper_parameters"]
    assert from_tirex_hparams(good).input_ff_dim == 48
    bad = json.loads(json.dumps(good))
    bad["model_config"]["patch_stride"] = 2
    with pytest.raises(ConfigMappingError, match="patch_stride"):
        from_tirex_hparams(bad)
    bad = json.loads(json.dumps(good))
    bad["model_config"]["output_patch_size"] = 8
    with pytest.raises(ConfigMappingError, match="output_patch_size"):
        from_tirex_hparams(bad)
    del bad["train_ctx_len"]
    with pytest.raises(ConfigMappingError, match="train_ctx_len"):
        from_tirex_hparams(bad)


def test_convert_reports_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "model.ckpt"
    torch.save({"weights": torch.zeros(2)}, bad)
    assert convert_main(["--from", "tirex", "--weights", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "state_dict" in capsys.readouterr().err


def test_horizon_not_a_multiple_of_the_patch_is_a_located_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  kind: tirex\n  input_patch_size: 13\n  output_patch_size: 13\n  horizon: 100\n"
                    "  context_length: 60\n")
    with pytest.raises(ConfigError) as e:
        validate_document(ModelDocument, load_yaml(path))
    lines = str(e.value).splitlines()
    assert f"{path}:5:12: model.horizon: expected a multiple of output_patch_size 13, got 100" in lines
    assert any(line.startswith(f"{path}:6:19: model.context_length:") for line in lines)
