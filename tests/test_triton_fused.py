"""Fused pointwise kernels of the xLSTM Large block and the in-place decode step, in Triton's interpreter.

Against the eager modules they replace: float16 ops bit for bit (the kernels round where PyTorch does;
float16 because the interpreter truncates when it converts to bfloat16, where GPUs round to nearest),
and whole models in float32 (prefill, a decode step, a short prompt) to 1e-5 relative: the only
differences are the order of float32 reductions.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from interpreted import run_interpreted

LARGE = dict(kind="xlstm-large-lm", vocab_size=97, embedding_dim=64, num_heads=2, num_blocks=2)


def _max_diff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def _ops() -> dict:
    """Max abs difference of each fused op against the eager modules, float16."""
    from xlstm_zoo.kernels.triton import fused
    from xlstm_zoo.xlstm.large import soft_cap
    from xlstm_zoo.xlstm.norms import HeadwiseLayerNorm, RMSNorm

    gen = torch.Generator().manual_seed(0)
    dt = torch.float16
    rand = lambda *s, scale=1.0: (scale * torch.randn(*s, generator=gen)).to(dt)  # noqa: E731
    norm = RMSNorm(64).to(dt)
    norm.weight.data = rand(64, scale=0.5) + 1
    x, r = rand(3, 5, 64), rand(3, 5, 64)
    y, s = fused.rms_norm(x, norm.weight, norm.eps, residual=r)
    out = {"residual_sum": _max_diff(s, x + r), "rms_norm_residual": _max_diff(y, norm(x + r)),
           "rms_norm": _max_diff(fused.rms_norm(x, norm.weight, norm.eps), norm(x))}
    gate_up = rand(2, 7, 96)  # a fused projection: the kernels read its halves in place
    out["swiglu"] = _max_diff(fused.swiglu(*gate_up.chunk(2, -1)), F.silu(gate_up[..., :48]) * gate_up[..., 48:])
    ifg = rand(2, 5, 6, scale=30.0)
    i, f = fused.soft_cap_gates(*ifg.chunk(2, -1), 15.0)
    out["soft_cap"] = max(_max_diff(i, soft_cap(ifg[..., :3], 15.0).transpose(1, 2)),
                          _max_diff(f, soft_cap(ifg[..., 3:], 15.0).transpose(1, 2)))
    hn = HeadwiseLayerNorm(48, 1e-6).to(dt)
    hn.weight.data = rand(48)
    h, o = rand(2, 3, 5, 16), rand(2, 5, 96)[..., 48:]
    out["headwise_norm_gate"] = _max_diff(fused.headwise_norm_gate(h, o, hn.weight, hn.eps),
                                          hn(h.transpose(1, 2)) * torch.sigmoid(o))
    return out


def _model(pointwise: str, weight_mode: str, kernel: str):
    from xlstm_zoo import build_model

    torch.manual_seed(0)
    kernels = {"pointwise_kernel": pointwise, "mode": "inference", "step_kernel": kernel,
               "sequence_kernel": kernel, "chunkwise_kernel": "chunkwise--native"}
    return build_model({"model": {**LARGE, "weight_mode": weight_mode, "kernels": kernels}}).eval()


def _models() -> dict:
    """Relative logit differences, fused Triton model vs eager native, per weight mode and phase."""
    from xlstm_zoo.xlstm.backend import states_updated_in_place

    out = {}
    ids = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(1))
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    for mode in ("single", "fused"):
        native, triton_ = _model("native", mode, "native"), _model("triton", mode, "triton")
        triton_.load_state_dict(native.state_dict())
        with torch.no_grad():
            (ln, sn), (lt, st) = native(ids), triton_(ids)
            out[f"{mode}_prefill"] = rel(lt, ln)
            out[f"{mode}_step"] = rel(triton_(ids[:, :1], st).logits, native(ids[:, :1], sn).logits)
            out[f"{mode}_short_prompt"] = rel(triton_(ids[:, :5], st).logits, native(ids[:, :5], sn).logits)
            c_before = st.blocks[0].c.clone()
            with states_updated_in_place():
                _, new = triton_(ids[:, :1], st)
            out[f"{mode}_in_place_same_tensor"] = float(new.blocks[0].c.data_ptr() == st.blocks[0].c.data_ptr())
            out[f"{mode}_in_place_value"] = rel(st.blocks[0].c, native(ids[:, :1], sn).state.blocks[0].c)
            out[f"{mode}_in_place_changed"] = float(not torch.equal(c_before, st.blocks[0].c))
    return out


def _gate_step() -> dict:
    """The decode step that projects its own gates, against the float64 recurrence fed gates computed
    in float64: one DHV block per program (default at small batch) and 2 or 4 (forced, and by default
    at 256 heads), relative errors of h and the new c, n, m."""
    from test_triton_kernels import mlstm_reference
    from xlstm_zoo.kernels.triton.mlstm_step import mlstm_step_projecting_gates

    gen = torch.Generator().manual_seed(2)
    out = {}
    for name, (B, NH, DQ, DV, D, per_program) in {"one_slab": (2, 2, 16, 32, 48, None),
                                                  "two_slabs": (2, 2, 256, 64, 48, 2),
                                                  "four_slabs": (1, 2, 256, 64, 40, 4),
                                                  "by_batch": (128, 2, 256, 64, 24, None)}.items():
        q, k = (torch.randn(B, NH, DQ, generator=gen) for _ in range(2))
        v, x = torch.randn(B, NH, DV, generator=gen), torch.randn(B, D, generator=gen)
        weights = (torch.randn(NH, D, generator=gen), torch.randn(NH, generator=gen),
                   torch.randn(NH, D, generator=gen), 3 + torch.randn(NH, generator=gen))
        c, n, m = (torch.randn(B, NH, DQ, DV, generator=gen), torch.randn(B, NH, DQ, generator=gen).abs(),
                   torch.randn(B, NH, 1, generator=gen))
        h, (c1, n1, m1) = mlstm_step_projecting_gates(q, k, v, x, weights, 15.0, c, n, m,
                                                      slabs_per_program=per_program)
        w_i, b_i, w_f, b_f = (t.double() for t in weights)
        gate = lambda w, b: (15.0 * torch.tanh((x.double() @ w.T + b) / 15.0))[:, :, None, None]  # noqa: E731
        rh, rc, rn, rm = mlstm_reference(q.double()[:, :, None], k.double()[:, :, None], v.double()[:, :, None],
                                         gate(w_i, b_i)[..., 0], gate(w_f, b_f)[..., 0], c.double(), n.double(),
                                         m.double())
        rel = lambda a, b: float((a.double() - b).norm() / b.norm())  # noqa: E731
        out[name] = max(rel(h, rh[:, :, 0]), rel(c1, rc), rel(n1, rn), rel(m1, rm))
    return out


@pytest.fixture(scope="module")
def results():
    pytest.importorskip("triton")
    return run_interpreted(__file__)


def test_fused_ops_round_like_the_eager_modules(results):
    assert results["ops"] == {name: 0.0 for name in results["ops"]}


def test_fused_model_matches_native(results):
    assert len(results["models"]) == 12
    for name, value in results["models"].items():
        if name.endswith("in_place_same_tensor") or name.endswith("in_place_changed"):
            assert value == 1.0, name
        else:
            assert value < 1e-5, (name, value)


def test_gate_projecting_step_matches_float64(results):
    assert set(results["gate_step"]) == {"one_slab", "two_slabs", "four_slabs", "by_batch"}
    for name, err in results["gate_step"].items():
        assert err < 1e-5, (name, err)  # float32 throughout: a few 1e-7 expected


def test_fused_kernels_only_without_autograd():
    """With autograd on (training) the block takes the PyTorch ops: the fused kernels have no backward."""
    model = _model("triton", "single", "native")
    ids = torch.randint(0, 97, (1, 6))
    model(ids).logits.sum().backward()  # would fail inside Triton on CPU tensors if the fused path ran
    assert model.lm_head.weight.grad is not None and model.backbone.blocks[0].norm_ffn.weight.grad.abs().sum() > 0


if __name__ == "__main__":
    print(json.dumps({"ops": _ops(), "models": _models(), "gate_step": _gate_step()}))
