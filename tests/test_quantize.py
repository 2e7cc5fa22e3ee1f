"""Weight-only quantization (registry/quantize.py, torchao) on the CPU: int8 and float8 models run, give
logits close to the unquantized model's and the same greedy tokens; what is quantized and what is not;
clear errors for what it does not cover.

Tolerances: int8 per-row rounds each weight to 1/254 of its row's range, float8 (e4m3) keeps 3 mantissa
bits (2**-4 relative); over two blocks of random weights the logits move by ~2.5% (int8) and ~5-10%
(float8) relative. The quality of trained models: benchmarks/results (loss within 1% for int8).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from xlstm_zoo import save_pretrained  # noqa: E402
from xlstm_zoo.registry.builder import build_model  # noqa: E402
from xlstm_zoo.registry.quantize import tensor_bytes  # noqa: E402

VOCAB = 61
LARGE = {"model": {"kind": "xlstm-large-lm", "vocab_size": VOCAB, "embedding_dim": 128, "num_heads": 2,
                   "num_blocks": 2, "weight_mode": "fused", "kernels": {"mode": "inference", "chunk_size": 16}}}


def _build(quantize=None):
    torch.manual_seed(0)
    return build_model(LARGE, quantize=quantize).eval()


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method, tol", [("int8-weight-only", 0.05), ("float8-weight-only", 0.1)])
def test_quantized_model_runs_close_to_unquantized(method, tol):
    ref, model = _build(), _build(method)
    layer = model.backbone.blocks[0].mlstm_layer
    assert hasattr(model.lm_head.weight, "qdata") and hasattr(model.backbone.blocks[0].ffn.proj_down.weight, "qdata")
    assert hasattr(layer.qkv_opreact.weight, "qdata") == (method == "int8-weight-only")  # float8: zero rows
    assert not hasattr(layer.ifgate_preact.weight, "qdata")  # read by the step kernel as it is
    assert torch.equal(layer.ifgate_preact.weight, ref.backbone.blocks[0].mlstm_layer.ifgate_preact.weight)
    ids = torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        error = _rel(model(ids).logits, ref(ids).logits)
    assert 0 < error < tol, error  # quantized (not a no-op), and close
    weights = sum(tensor_bytes(p) for p in model.parameters())
    assert weights < 0.5 * sum(tensor_bytes(p) for p in ref.parameters())  # float32 -> 1 byte per weight
    greedy = model.generate(ids[:, :9], 6)
    with torch.no_grad():  # generation through the quantized layers: its tokens are its own argmax
        assert torch.equal(model(greedy[:, :-1]).logits[:, 8:].argmax(-1), greedy[:, 9:])


def test_float8_keeps_layers_with_zero_rows_and_stays_finite():
    model = _build("float8-weight-only")  # a fresh model's output-gate rows are zero
    assert not hasattr(model.backbone.blocks[0].mlstm_layer.qkv_opreact.weight, "qdata")
    assert hasattr(model.backbone.blocks[0].ffn.proj_down.weight, "qdata")
    with torch.no_grad():
        assert torch.isfinite(model(torch.randint(0, VOCAB, (1, 7))).logits).all()


def test_quantize_refuses_what_it_does_not_cover(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'int8-weight-only'"):
        build_model(LARGE, quantize="int8-weight")
    with pytest.raises(ValueError, match="needs the model on a CUDA GPU"):
        build_model(LARGE, quantize="int4-weight-only")
    neurips = {"model": {"kind": "xlstm-lm", "vocab_size": VOCAB, "embedding_dim": 32, "num_blocks": 1,
                         "mlstm_block": {"mlstm": {"num_heads": 2}}}}
    with pytest.raises(ValueError, match="xLSTM Large family"):
        build_model(neurips, quantize="int8-weight-only")
    with pytest.raises(ValueError, match="weights are quantized"):
        save_pretrained(_build("int8-weight-only"), tmp_path)
