"""Triton kernels against an independent float64 recurrence, run in Triton's CPU interpreter.

TRITON_INTERPRET is read when triton is imported, so the Triton checks run in one child process
(`python tests/test_triton_kernels.py` under TRITON_INTERPRET=1, tests/interpreted.py) that prints their
relative errors as JSON; the tests below assert on them. Nothing leaks into other tests of the same pytest process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from interpreted import run_interpreted

# ---------------------------------------------------------------------------------------------------------
# float64 references: a plain loop over time steps of the cell equations


def mlstm_reference(q, k, v, i, f, c, n, m, eps=1e-6):
    """mLSTM per-step recurrence (q scaled by DHQK^-1/2, exp input gate, logsigmoid forget gate)."""
    hs = []
    for t in range(q.shape[2]):
        logf = F.logsigmoid(f[:, :, t, None])
        m_new = torch.maximum(logf + m, i[:, :, t, None])
        fa, ia = torch.exp(logf + m - m_new), torch.exp(i[:, :, t, None] - m_new)
        kt, vt, qt = k[:, :, t], v[:, :, t], q[:, :, t] / math.sqrt(q.shape[-1])
        c = fa[..., None] * c + ia[..., None] * kt[..., :, None] * vt[..., None, :]
        n = fa * n + ia * kt
        den = torch.maximum((qt * n).sum(-1, keepdim=True).abs(), torch.exp(-m_new)) + eps
        hs.append((qt[..., None] * c).sum(-2) / den)
        m = m_new
    return torch.stack(hs, 2), c, n, m


def slstm_reference(wx, r, b, c, n, h, m):
    """sLSTM per-step recurrence: head-wise recurrent matmul, stabilised exp gates, y = o c / n."""
    ys = []
    for t in range(wx.shape[1]):
        raw = [wx[:, t, g] + torch.einsum("bhd,hde->bhe", h, r[:, :, g]) + b[:, g] for g in range(4)]
        logf = F.logsigmoid(raw[1])
        m_new = torch.where(n == 0, raw[0], torch.maximum(raw[0], logf + m))
        ig = torch.exp(raw[0] - m_new).clamp(max=1.0)
        fg = torch.exp(logf + m - m_new).clamp(max=1.0)
        c = fg * c + ig * torch.tanh(raw[2])
        n = fg * n + ig
        h = torch.sigmoid(raw[3]) * c / n
        m = m_new
        ys.append(h)
    return torch.stack(ys, 1), c, n, h, m


def state_loss(x, c, n, m, wts):
    """A loss on outputs and on the de-stabilised states c e^m, n e^m (the quantities the states stand for:
    the stabiliser m is a gauge, so its own gradient is not part of the contract)."""
    wh, wc, wn = wts
    return (x * wh).sum() + (c * torch.exp(m)[..., None] * wc).sum() + (n * torch.exp(m) * wn).sum()


# ---------------------------------------------------------------------------------------------------------
# child process: run every check, print {name: {quantity: relative error}}


def _rel(x, ref):
    x, ref = x.detach().double(), ref.detach().double()
    if not torch.isfinite(x).all():
        return float("inf")
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


def _mlstm_inputs(gen, B, NH, S, DQ, DV, gate_scale, with_init, dtype):
    q, k = (torch.randn(B, NH, S, DQ, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, NH, S, DV, generator=gen, dtype=torch.float64)
    i = gate_scale * torch.randn(B, NH, S, generator=gen, dtype=torch.float64)
    f = gate_scale * torch.randn(B, NH, S, generator=gen, dtype=torch.float64) + (0 if gate_scale > 5 else 2.0)
    if gate_scale > 5:  # extreme pre-activations: +-gate_scale exactly
        i, f = gate_scale * i.sign(), gate_scale * f.sign()
    ins = [x.to(dtype) for x in (q, k, v, i, f)]
    init = None
    if with_init:
        init = (torch.randn(B, NH, DQ, DV, generator=gen, dtype=torch.float64),
                torch.randn(B, NH, DQ, generator=gen, dtype=torch.float64).abs(),
                torch.randn(B, NH, 1, generator=gen, dtype=torch.float64))
    return ins, init


def _check_mlstm(fn, gen, B, NH, S, DQ, DV, *, chunk, gate_scale=1.0, with_init=True, dtype=torch.float32,
                 grads=True):
    """Forward, final states and (grads=True) all gradients of an mLSTM kernel against mlstm_reference."""
    ins, init = _mlstm_inputs(gen, B, NH, S, DQ, DV, gate_scale, with_init, dtype)
    wts = (torch.randn(B, NH, S, DV, generator=gen, dtype=torch.float64),
           torch.randn(B, NH, DQ, DV, generator=gen, dtype=torch.float64),
           torch.randn(B, NH, DQ, generator=gen, dtype=torch.float64))
    leaves = [x.clone().requires_grad_() for x in ins]
    init_leaves = [x.float().clone().requires_grad_() for x in init] if init else []
    kw = dict(c_initial=init_leaves[0], n_initial=init_leaves[1], m_initial=init_leaves[2]) if init else {}
    h, (c, n, m) = fn(*leaves, return_last_states=True, chunk_size=chunk, **kw)
    ref_leaves = [x.double().clone().requires_grad_() for x in ins]
    ref_init = [x.double().clone().requires_grad_() for x in init] if init else [
        torch.zeros(B, NH, DQ, DV, dtype=torch.float64), torch.zeros(B, NH, DQ, dtype=torch.float64),
        torch.zeros(B, NH, 1, dtype=torch.float64)]
    rh, rc, rn, rm = mlstm_reference(*ref_leaves, *ref_init)
    out = {"h": _rel(h, rh), "c": _rel(c * torch.exp(m)[..., None], rc * torch.exp(rm)[..., None]),
           "n": _rel(n * torch.exp(m), rn * torch.exp(rm))}
    if not grads:
        return out
    state_loss(h.double(), c.double(), n.double(), m.double(), wts).backward()
    state_loss(rh, rc, rn, rm, wts).backward()
    out.update({f"d{name}": _rel(x.grad, r.grad) for name, x, r in zip("qkvif", leaves, ref_leaves)})
    # df is a reverse cumsum of terms as large as di: at saturated gates (f = -30) the exact df is ~1e-13 of
    # them, so float32 can only resolve it relative to di's size (native autograd behaves the same).
    df_scale = max(ref_leaves[4].grad.norm(), ref_leaves[3].grad.norm())
    out["df"] = float((leaves[4].grad.double() - ref_leaves[4].grad).norm() / df_scale)
    if init:
        out.update({f"d{name}0": _rel(x.grad, r.grad) for name, x, r in zip("cnm", init_leaves, ref_init)})
    return out


def _check_step(step, gen, B, NH, DQ, DV):
    """One step from a random (non-zero) state."""
    ins, init = _mlstm_inputs(gen, B, NH, 1, DQ, DV, 3.0, True, torch.float32)
    q, k, v = (x[:, :, 0] for x in ins[:3])
    i, f = ins[3], ins[4]  # (B, NH, 1) at S = 1
    h, (c, n, m) = step(q, k, v, i, f, *(x.float() for x in init), eps=1e-6)
    rh, rc, rn, rm = mlstm_reference(*(x.double() for x in ins), *init)
    return {"h": _rel(h, rh[:, :, 0]), "c": _rel(c, rc), "n": _rel(n, rn), "m": _rel(m, rm)}


def _check_slstm(fn, gen, B, S, NH, DH, *, gate_scale=1.0):
    """sLSTM forward, final states and gradients of wx, r, b and the initial states."""
    wx = gate_scale * torch.randn(B, S, 4, NH, DH, generator=gen, dtype=torch.float64)
    r = torch.randn(NH, DH, 4, DH, generator=gen, dtype=torch.float64) / math.sqrt(DH)
    b = torch.randn(NH, 4, DH, generator=gen, dtype=torch.float64)
    init = [torch.randn(B, NH, DH, generator=gen, dtype=torch.float64) for _ in range(4)]
    init[1] = init[1].abs() + 0.5  # n > 0: a live state
    wts = [torch.randn(B, S, NH, DH, generator=gen, dtype=torch.float64)] + [
        torch.randn(B, NH, DH, generator=gen, dtype=torch.float64) for _ in range(3)]

    def loss(y, c, n, h, m):
        return (y * wts[0]).sum() + (c * torch.exp(m) * wts[1]).sum() + (n * torch.exp(m) * wts[2]).sum() \
            + (h * wts[3]).sum()

    leaves = [x.float().clone().requires_grad_() for x in (wx, r, b, *init)]
    y, (c, n, h, m) = fn(*leaves[:3], c_initial=leaves[3], n_initial=leaves[4], h_initial=leaves[5],
                         m_initial=leaves[6], return_last_states=True)
    loss(y.double(), c.double(), n.double(), h.double(), m.double()).backward()
    ref = [x.clone().requires_grad_() for x in (wx, r, b, *init)]
    ry, rc, rn, rh, rm = slstm_reference(*ref[:3], ref[3], ref[4], ref[5], ref[6])
    loss(ry, rc, rn, rh, rm).backward()
    out = {"y": _rel(y, ry), "c": _rel(c * torch.exp(m), rc * torch.exp(rm)), "h": _rel(h, rh)}
    out.update({f"d{name}": _rel(x.grad, r_.grad) for name, x, r_ in zip(("wx", "r", "b", "c0", "n0", "h0"),
                                                                         leaves, ref)})
    return out


MLSTM_CASES = {  # name: (B, NH, S, DQ, DV, chunk, gate_scale, with_init)
    "chunk16_S37": (1, 2, 37, 16, 32, 16, 1.0, True),
    "chunk32_S50": (2, 1, 50, 32, 16, 32, 1.0, True),
    "chunk64_S20_noinit": (1, 2, 20, 16, 16, 64, 1.0, False),
    "chunk16_S40_extreme": (1, 2, 40, 16, 16, 16, 30.0, True),
    "chunk128_S70_dims24": (1, 1, 70, 24, 40, 128, 1.0, True),
}


def run_checks() -> dict:
    from xlstm_zoo.kernels.triton.mlstm_chunkwise import mlstm_chunkwise
    from xlstm_zoo.kernels.triton.mlstm_step import mlstm_sequence, mlstm_step
    from xlstm_zoo.kernels.triton.slstm import slstm_sequence

    gen = torch.Generator().manual_seed(0)
    res = {}
    for name, (B, NH, S, DQ, DV, L, gs, init) in MLSTM_CASES.items():
        res[f"chunkwise_{name}"] = _check_mlstm(mlstm_chunkwise, gen, B, NH, S, DQ, DV, chunk=L, gate_scale=gs,
                                                with_init=init)
    # 16-bit inputs: float16, since the interpreter's bfloat16 tl.dot is wrong (triton 3.9); bf16 runs on the GPU.
    res["chunkwise_fp16"] = _check_mlstm(mlstm_chunkwise, gen, 1, 2, 40, 16, 16, chunk=16, dtype=torch.float16)
    res["sequence_S9"] = _check_mlstm(mlstm_sequence, gen, 1, 2, 9, 16, 32, chunk=64, grads=False)
    res["step"] = _check_step(mlstm_step, gen, 2, 2, 24, 40)
    res["slstm"] = _check_slstm(slstm_sequence, gen, 2, 9, 2, 16)
    res["slstm_extreme"] = _check_slstm(slstm_sequence, gen, 1, 7, 2, 16, gate_scale=30.0)
    # The GPU path splits each head's units over a group of programs that wait for each other's writes every
    # step, which the interpreter (programs in sequence) cannot run: there one launch per step stands for that.
    from xlstm_zoo.kernels.triton import slstm
    for name, force, shape in (("slstm_split", {"U": 16, "stepwise": True}, (2, 7, 2, 32)),
                               ("slstm_split_streamed", {"U": 16, "stepwise": True, "resident": False}, (2, 6, 2, 24)),
                               ("slstm_streamed", {"resident": False}, (1, 5, 2, 16))):
        slstm._FORCE = force
        try:
            res[name] = _check_slstm(slstm_sequence, gen, *shape)
        finally:
            slstm._FORCE = None
    return res


# ---------------------------------------------------------------------------------------------------------
# tests

# float32 arithmetic end to end: errors of a few 1e-6 relative; 1e-4 leaves room for the exp of large gates.
TOL_F32 = 1e-4
# 16-bit inputs and tensor-core operands (fp16: 11-bit mantissa): errors of a few 1e-3 expected.
TOL_16BIT = 1e-2

triton = pytest.importorskip("triton")


@pytest.fixture(scope="module")
def results():
    return run_interpreted(__file__)


@pytest.mark.parametrize("case", [f"chunkwise_{n}" for n in MLSTM_CASES] + ["sequence_S9", "step", "slstm",
                                                                              "slstm_extreme", "slstm_split",
                                                                              "slstm_split_streamed",
                                                                              "slstm_streamed"])
def test_triton_matches_float64_recurrence(results, case):
    errs = results[case]
    assert set(errs) >= {"h", "c"} or set(errs) >= {"y", "c"}
    bad = {q: e for q, e in errs.items() if not e <= TOL_F32}
    assert not bad, f"{case}: relative errors above {TOL_F32}: {bad}"


def test_triton_chunkwise_16bit(results):
    bad = {q: e for q, e in results["chunkwise_fp16"].items() if not e <= TOL_16BIT}
    assert not bad, bad


def test_triton_kernels_refuse_cpu_tensors_without_interpreter():
    code = (
        "import torch\n"
        "from xlstm_zoo.kernels import KernelUnavailableError, get_mlstm_kernel, get_slstm_kernel, "
        "get_mlstm_step_kernel\n"
        "x = torch.zeros(1, 1, 16, 16)\n"
        "g = torch.zeros(1, 1, 16)\n"
        "calls = [lambda: get_mlstm_kernel('chunkwise--triton')(x, x, x, g, g),\n"
        "         lambda: get_mlstm_step_kernel('triton')(x[:, :, 0], x[:, :, 0], x[:, :, 0], g[..., :1], "
        "g[..., :1], x[0, 0][None, None], x[:, :, 0], g[..., :1]),\n"
        "         lambda: get_slstm_kernel('triton')(torch.zeros(1, 2, 4, 1, 16), torch.zeros(1, 16, 4, 16), "
        "torch.zeros(1, 4, 16))]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except KernelUnavailableError as e:\n"
        "        assert 'CUDA' in str(e)\n"
        "    else:\n"
        "        raise SystemExit('no error')\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_native_kernels_match_float64_recurrence():
    """The native forms (the CPU fallback) against the same reference, gradients included."""
    from xlstm_zoo.kernels import mlstm_native, slstm_native

    gen = torch.Generator().manual_seed(1)
    for fn in (mlstm_native.mlstm_chunkwise, mlstm_native.mlstm_sequence):
        errs = _check_mlstm(fn, gen, 1, 2, 21, 8, 12, chunk=8, gate_scale=1.0)
        assert all(e <= TOL_F32 for e in errs.values()), errs
    errs = _check_slstm(slstm_native.slstm_sequence, gen, 2, 6, 2, 8)
    assert all(e <= TOL_F32 for e in errs.values()), errs


if __name__ == "__main__":
    print(json.dumps(run_checks()))
