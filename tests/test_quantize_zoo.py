"""The zoo's own weight-only quantization (xlstm/quantized.py, quantize_backend="zoo") and its Triton
matvec kernels (kernels/triton/weight_only.py, in Triton's interpreter).

Tolerances: the kernels accumulate in float32 what the reference multiplies in float64 from the same
dequantized weights, so ~1e-7 relative (2e-6 allowed); 16-bit inputs are read exactly and the output is
rounded once (float16: 2**-11 relative, ~3e-4 over a vector, 1e-3 allowed; bfloat16: 2**-8, ~3.5e-3,
6e-3 allowed). Quantization
itself: on Gaussian weights int8 per row leaves ~0.7% relative error (254 steps over the row's range),
int4 per group of 128 ~9.5% (15 steps over the group's); whole random models move more (their logits
amplify rounding), so the kernels' models are checked against a dequantized twin.
"""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interpreted import run_interpreted

LARGE = {"model": {"kind": "xlstm-large-lm", "vocab_size": 61, "embedding_dim": 64, "num_heads": 2,
                   "num_blocks": 2, "weight_mode": "fused", "kernels": {"mode": "inference", "chunk_size": 16}}}


def _rel(a, b) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _build(method=None, dtype=None, kernels=None):
    from xlstm_zoo.registry.builder import build_model
    torch.manual_seed(0)
    config = copy.deepcopy(LARGE)
    config["model"]["kernels"].update(kernels or {})
    return build_model(config, quantize=method, quantize_backend="zoo", dtype=dtype).eval()


def _twin(model):
    """The quantized model with each WeightOnlyLinear replaced by an nn.Linear of its dequantized weight."""
    from xlstm_zoo.xlstm.quantized import WeightOnlyLinear
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WeightOnlyLinear):
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                linear.weight.data = child.weight_dequantized()
                setattr(parent, name, linear)
    return model


# ------------------------------------------------------------------------------------ in the interpreter


def _kernels() -> dict:
    """Relative error of each matvec against float64 products with the dequantized weight, with and
    without a residual added (the decode step's FFN down projection); products of several rows (int8's
    on the tensor cores, all of int4's) once split in three over the inputs, once whole."""
    from xlstm_zoo.kernels.triton import weight_only
    from xlstm_zoo.kernels.triton.weight_only import int4_matvec, int8_matvec
    from xlstm_zoo.xlstm.quantized import dequantize_int4, quantize_int4, quantize_int8

    gen = torch.Generator().manual_seed(0)
    out = {}
    # 200: a last group of 72, zero-padded; 600: 5 groups in steps of 2 (the last one half empty), int8 in
    # 10 tiles of 64; 40 and 33 outputs: the last block of 16 masked
    for N, K in ((40, 200), (33, 256), (16, 128), (24, 600)):
        w = torch.randn(N, K, generator=gen)
        q4, q8 = quantize_int4(w), quantize_int8(w)
        w4, w8 = dequantize_int4(*q4, K).double(), q8[0].double() * q8[1].double()[:, None]
        for M, split, dt in itertools.product((1, 6, 16), (1, 3), (torch.float32, torch.float16, torch.bfloat16)):
            weight_only._INTERPRETER_SPLIT = split  # all rows in one program: 16 fill the tile, 1 and 6 masked
            x = torch.randn(2, M, K, generator=gen).to(dt)[:, None]  # (2, 1, M, K): leading dims kept
            r = torch.randn(1, M, N, generator=gen).to(dt)
            y4, y8 = int4_matvec(x[0], *q4), int8_matvec(x[0], *q8)
            assert y4.dtype == y8.dtype == dt and y4.shape == y8.shape == (1, M, N)
            case = f"{N}x{K} M={M} split={split} {dt}"
            out[f"int4 {case}"] = _rel(y4, x[0].double() @ w4.T)
            out[f"int8 {case}"] = _rel(y8, x[0].double() @ w8.T)
            if M in (1, 6):  # the one-row kernels and the several-rows ones
                out[f"int4 {case} residual"] = _rel(int4_matvec(x[0], *q4, residual=r),
                                                    r.double() + x[0].double() @ w4.T)
                out[f"int8 {case} residual"] = _rel(int8_matvec(x[0], *q8, residual=r),
                                                    r.double() + x[0].double() @ w8.T)
    weight_only._INTERPRETER_SPLIT = 3
    return out


def _models() -> dict:
    """A zoo-quantized model's prefill and decode step (its projections through the kernels) against its
    dequantized twin (nn.Linear, PyTorch products): float32, relative logit differences. `fused`: the
    blocks' pointwise work and decode step in Triton kernels, as on a GPU (the FFN down projection's
    kernel then adds the residual)."""
    ids = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(1))
    out = {}
    fused = {"pointwise_kernel": "triton", "step_kernel": "triton", "sequence_kernel": "triton"}
    for method, kernels in (("int8-weight-only", None), ("int4-weight-only", None), ("int8-weight-only", fused),
                            ("int4-weight-only", fused)):
        model = _build(method, kernels=kernels)
        method = method if kernels is None else f"{method} fused"
        twin = _twin(copy.deepcopy(model))
        with torch.no_grad():
            (lm, sm), (lt, st) = model(ids), twin(ids)  # prefill: 18 rows, the dequantized product
            out[f"{method} prefill"] = _rel(lm, lt)
            out[f"{method} step"] = _rel(model(ids[:, :1], sm).logits, twin(ids[:, :1], st).logits)
    return out


@pytest.fixture(scope="module")
def results():
    pytest.importorskip("triton")
    return run_interpreted(__file__)


def test_matvec_kernels_match_float64(results):
    assert len(results["kernels"]) == 4 * 3 * 2 * 3 * 2 + 4 * 2 * 2 * 3 * 2
    for name, err in results["kernels"].items():
        tol = 1e-3 if "torch.float16" in name else 6e-3 if "bfloat16" in name else 2e-6
        assert err < tol, (name, err)


def test_quantized_model_decodes_through_the_kernels_like_its_dequantized_twin(results):
    assert len(results["models"]) == 8
    for name, err in results["models"].items():
        assert err < 1e-5, (name, err)


# ----------------------------------------------------------------------------------- plain PyTorch (CPU)


def test_quantization_error_and_clipping():
    from xlstm_zoo.xlstm import quantized

    w = torch.randn(64, 320, generator=torch.Generator().manual_seed(3))
    w[0, 5] = 12.0  # an outlier: clipping its group's range pays off
    err8 = _rel(quantized.quantize_int8(w)[0].float() * quantized.quantize_int8(w)[1][:, None], w)
    err4 = _rel(quantized.dequantize_int4(*quantized.quantize_int4(w), 320), w)
    assert 0 < err8 < 0.01 and 0.05 < err4 < 0.11, (err8, err4)
    clips = quantized.CLIPS
    try:
        quantized.CLIPS = (1.0,)
        plain = quantized.dequantize_int4(*quantized.quantize_int4(w), 320)
    finally:
        quantized.CLIPS = clips
    best = quantized.dequantize_int4(*quantized.quantize_int4(w), 320)
    per_group = lambda d: F.pad((d - w).square(), (0, 64)).view(64, 3, 128).sum(2)  # noqa: E731
    assert (per_group(best) <= per_group(plain) * (1 + 1e-6)).all()  # never worse, group by group
    assert _rel(best, w) < _rel(plain, w)
    q, scale, offset = quantized.quantize_int4(w)
    assert q.dtype == torch.uint8 and q.shape == (64, 3 * 64) and scale.shape == offset.shape == (3, 64)


@pytest.mark.parametrize("method, bits, tol", [("int8-weight-only", 8, 0.05), ("int4-weight-only", 4, 0.6)])
def test_zoo_quantized_model_on_the_cpu(method, bits, tol):
    from xlstm_zoo.registry.quantize import tensor_bytes
    from xlstm_zoo.xlstm.quantized import WeightOnlyLinear

    ref, model = _build(), _build(method)
    layer = model.backbone.blocks[0].mlstm_layer
    swapped = [m for m in model.modules() if isinstance(m, WeightOnlyLinear)]
    assert len(swapped) == 2 * 4 + 1 and all(m.bits == bits for m in swapped)  # qkv, out, up, down; lm_head
    assert isinstance(layer.ifgate_preact, nn.Linear)  # read by the step kernel as it is
    assert torch.equal(layer.ifgate_preact.weight, ref.backbone.blocks[0].mlstm_layer.ifgate_preact.weight)
    assert model.quantization == f"{method} (zoo)"
    ids = torch.randint(0, 61, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        error = _rel(model(ids).logits, ref(ids).logits)
    assert 0 < error < tol, error
    # float32 -> 1 byte (int8) or ~0.56 (int4, this model's widths padded to groups of 128) per weight
    assert sum(tensor_bytes(p) for p in model.parameters()) < 0.3 * sum(tensor_bytes(p) for p in ref.parameters())
    greedy = model.generate(ids[:, :5], 4)
    with torch.no_grad():
        assert torch.equal(model(greedy[:, :-1]).logits[:, 4:].argmax(-1), greedy[:, 5:])


def test_zoo_backend_refuses_float8_and_unknown_names():
    with pytest.raises(ValueError, match="float8 is torchao's"):
        _build("float8-weight-only")
    with pytest.raises(ValueError, match="did you mean 'zoo'"):
        from xlstm_zoo.registry.builder import build_model
        build_model(LARGE, quantize="int8-weight-only", quantize_backend="zo")


if __name__ == "__main__":
    print(json.dumps({"kernels": _kernels(), "models": _models()}))


@pytest.mark.parametrize("name, dtype", [("int8", "bf16"), ("int8 rows", "bf16"), ("int4 row", "bf16"),
                                         ("int4", "bf16"), ("int4", "fp16")])
def test_weight_only_kernels_build_for_sm90(name, dtype):
    """What the interpreter never compiles, built for an H100/H200 (Triton's ptxas, no GPU): every kernel
    without register spills, its weight tiles loaded by cp.async (LDGSTS: the software pipeline is on), and
    the int4 kernels' inline-PTX forms leaner than their plain forms (what they are there for)."""
    import re

    from xlstm_zoo.kernels.triton.cubin import WEIGHT_ONLY, build
    fn, tuned, signature, fixed = WEIGHT_ONLY[name]
    if dtype == "fp16":  # the other PTX pairs (float16's bit pattern)
        signature = {k: "*fp16" if v == "*bf16" else v for k, v in signature.items()}
        from xlstm_zoo.kernels.triton.weight_only import _NIBBLE_BIAS
        fixed = dict(fixed, **dict(zip(("BIAS", "MAGIC"), _NIBBLE_BIAS[torch.float16])))
    config = tuned.configs[0]
    out = build(fn, signature, {**config.kwargs, **fixed}, config.num_warps, config.num_stages)
    assert out.stack == 0, f"{name} {config}: {out.stack} bytes of stack (spills)"
    assert "LDGSTS" in out.sass
    if "ASM" in fixed:
        plain = build(fn, signature, {**config.kwargs, **fixed, "ASM": False}, config.num_warps, config.num_stages)
        count = lambda sass: len(re.findall(r"/\*[0-9a-f]{4,}\*/", sass))  # noqa: E731
        assert count(out.sass) < count(plain.sass)
