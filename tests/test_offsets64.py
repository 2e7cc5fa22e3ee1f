"""Every Triton kernel past 2**31 elements, in Triton's interpreter: 64-bit offsets.

A 131072-token 7B prefill crashed in the SwiGLU kernel: 131072 x 21888 elements, and 32-bit offsets
wrap there. Each check here gives a kernel tensors of more than 2**31 elements (allocated, never
touched: the pages of an untouched CPU tensor cost no memory) and runs, in the interpreter, only the
last program along the launch's largest grid axis, the one whose offsets pass 2**31. Its output must
equal the same kernel on just that slice; with 32-bit offsets it reads and writes elsewhere (wrong
values or a crash of the child process).
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from interpreted import run_interpreted

BIG = 2**31


@contextlib.contextmanager
def _last_programs():
    """Launches run only the last program along their largest grid axis, with the program ids and
    counts of the full grid. Also skips the interpreter's copy of every argument back onto itself
    (CPU tensors are written in place), which would touch all pages."""
    from triton.runtime import interpreter as interp

    builder, executor = interp.interpreter_builder, interp.GridExecutor
    saved = executor.__init__, executor._restore_args_dev, builder.create_get_program_id, \
        builder.create_get_num_programs
    launch = {}

    def init(self, fn, arg_names, grid, *rest):
        full = tuple(grid) + (1,) * (3 - len(grid))
        axis = max(range(3), key=lambda a: full[a])
        self.zoo_launch = (full, [full[a] - 1 if a == axis else 0 for a in range(3)])
        saved[0](self, fn, arg_names, tuple(1 if a == axis else full[a] for a in range(3)), *rest)

    def call(self, *args, **kwargs):
        launch["full"], launch["skip"] = self.zoo_launch
        return original_call(self, *args, **kwargs)

    def program_id(axis):
        handle = saved[2](axis)
        return interp.TensorHandle(handle.data + launch["skip"][axis], handle.dtype)

    def num_programs(axis):
        return interp.TensorHandle(torch.tensor([launch["full"][axis]], dtype=torch.int32).numpy(), saved[3](axis).dtype)

    original_call = executor.__call__
    executor.__init__, executor.__call__, executor._restore_args_dev = init, call, lambda *a, **k: None
    builder.create_get_program_id, builder.create_get_num_programs = program_id, num_programs
    try:
        yield
    finally:
        executor.__init__, executor._restore_args_dev = saved[0], saved[1]
        executor.__call__ = original_call
        builder.create_get_program_id, builder.create_get_num_programs = saved[2], saved[3]


def _diff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def _fused() -> dict:
    from xlstm_zoo.kernels.triton import fused

    dt, gen = torch.float16, torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=gen).to(dt)  # noqa: E731
    out = {}
    rows, F_ = 131072, 16385  # rows x F > 2**31, as the 131072-token prefill's 131072 x 21888
    gu = torch.empty(rows, 2 * F_, dtype=dt)
    gu[-1] = rand(2 * F_)
    with _last_programs():
        y = fused.swiglu(*gu.chunk(2, -1))
    g, u = gu[-1].chunk(2)
    out["swiglu"] = _diff(y[-1], fused.swiglu(g[None], u[None])[0])
    del gu, y
    rows, D = BIG // 4096 + 1, 4096
    x, r = torch.empty(rows, D, dtype=dt), torch.empty(rows, D, dtype=dt)
    x[-1], r[-1] = rand(D), rand(D)
    w = rand(D)
    with _last_programs():
        y, s = fused.rms_norm(x, w, 1e-6, residual=r)
    y1, s1 = fused.rms_norm(x[-1:], w, 1e-6, residual=r[-1:])
    out["rms_norm"] = max(_diff(y[-1], y1[0]), _diff(s[-1], s1[0]))
    del x, r, y, s
    NH, DH = 4, 512
    S = BIG // (NH * DH) + 1
    h, o = torch.empty(1, NH, S, DH, dtype=dt), torch.empty(1, S, NH * DH, dtype=dt)
    h[:, :, -1], o[:, -1] = rand(1, NH, DH), rand(1, NH * DH)
    w = rand(NH * DH)
    with _last_programs():
        y = fused.headwise_norm_gate(h, o, w, 1e-6)
    out["headwise_norm_gate"] = _diff(y[:, -1], fused.headwise_norm_gate(h[:, :, -1:], o[:, -1:], w, 1e-6)[:, 0])
    del h, o, y
    S = BIG + 1024  # B * NH * S gate values
    ifg = torch.empty(1, S, 2, dtype=dt)
    ifg[:, -1024:] = 20 * rand(1, 1024, 2)
    with _last_programs():
        i, f = fused.soft_cap_gates(ifg[..., :1], ifg[..., 1:], 15.0)
    i1, f1 = fused.soft_cap_gates(ifg[:, -1024:, :1], ifg[:, -1024:, 1:], 15.0)
    out["soft_cap_gates"] = max(_diff(i[..., -1024:], i1), _diff(f[..., -1024:], f1))
    return out


def _chunkwise() -> dict:
    """Forward and backward: q, k, v, h and their gradients each hold more than 2**31 values."""
    from xlstm_zoo.kernels.triton.mlstm_chunkwise import mlstm_chunkwise

    dt, gen = torch.float16, torch.Generator().manual_seed(1)
    S, D = 1024, 64
    B = BIG // (S * D) + 1
    q, k, v, dh = (torch.empty(B, 1, S, D, dtype=dt) for _ in range(4))
    i, f = torch.zeros(B, 1, S), torch.zeros(B, 1, S)
    for t in (q, k, v, dh):
        t[-1] = torch.randn(1, S, D, generator=gen).to(dt)
    i[-1], f[-1] = torch.randn(1, S, generator=gen), torch.randn(1, S, generator=gen) + 3

    def run(q, k, v, i, f, dh):
        leaves = [t.requires_grad_() for t in (q, k, v, i, f)]
        h = mlstm_chunkwise(*leaves, chunk_size=256)
        return (h.detach(), *torch.autograd.grad(h, leaves, dh))

    with _last_programs():
        big = run(q, k, v, i, f, dh)
    one = run(*(t[-1:].clone() for t in (q, k, v, i, f, dh)))
    names = ("h", "dq", "dk", "dv", "di", "df")
    return {f"chunkwise_{n}": _diff(a[-1], b[0]) / float(b.abs().max()) for n, a, b in zip(names, big, one)}


def _step() -> dict:
    """The step kernels' C: B x NH x DHQK x DHV > 2**31 (large serving batches)."""
    from xlstm_zoo.kernels.triton.mlstm_step import mlstm_step, mlstm_step_projecting_gates

    gen = torch.Generator().manual_seed(2)
    D = 512
    B = BIG // (D * D) + 1
    rand = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    q, k, v, n = rand(B, 1, D), rand(B, 1, D), rand(B, 1, D), rand(B, 1, D).abs()
    i, f, m = rand(B, 1, 1), rand(B, 1, 1) + 3, rand(B, 1, 1)
    x, w = rand(B, 64), (rand(1, 64), rand(1), rand(1, 64), rand(1) + 3)
    out = {}
    for name, call in (("step", lambda *s, **kw: mlstm_step(q, k, v, i, f, *s, **kw)),
                       ("step_projecting_gates", lambda *s, **kw: mlstm_step_projecting_gates(q, k, v, x, w, 15.0, *s, **kw))):
        c = torch.empty(B, 1, D, D)
        c[-1] = rand(1, D, D)
        c_last = c[-1:].clone()
        with _last_programs():
            h, (c_new, n_new, _) = call(c, n, m, c_out=c)  # in place: no second 8 GB buffer
        sl = slice(B - 1, B)
        ref_q = {"q": q[sl], "k": k[sl], "v": v[sl]}
        if name == "step":
            h1, (c1, n1, _) = mlstm_step(ref_q["q"], ref_q["k"], ref_q["v"], i[sl], f[sl], c_last, n[sl], m[sl])
        else:
            h1, (c1, n1, _) = mlstm_step_projecting_gates(ref_q["q"], ref_q["k"], ref_q["v"], x[sl], w, 15.0, c_last,
                                                          n[sl], m[sl])
        out[name] = max(_diff(h[-1], h1[0]), _diff(c_new[-1], c1[0]), _diff(n_new[-1], n1[0]))
        del c, c_new
    return out


def _slstm() -> dict:
    """The sLSTM state buffers (4, B, S + 1, NH, DH) and gate buffers (B, S, 4, NH, DH) past 2**31."""
    from xlstm_zoo.kernels.triton.slstm import slstm_sequence

    gen = torch.Generator().manual_seed(3)
    S, DH = 255, 64
    B = 2**15 + 256  # B S 4 DH > 2**31; the last program owns the last 16 rows
    wx = torch.empty(B, S, 4, 1, DH, dtype=torch.float16)
    wx[-16:] = torch.randn(16, S, 4, 1, DH, generator=gen).to(wx.dtype)
    r = (0.3 * torch.randn(1, DH, 4, DH, generator=gen)).to(wx.dtype)
    b = torch.randn(1, 4, DH, generator=gen)
    with _last_programs():
        y, states = slstm_sequence(wx, r, b, return_last_states=True)
    y1, states1 = slstm_sequence(wx[-16:].clone(), r, b, return_last_states=True)
    return {"slstm": max(_diff(y[-16:], y1), *(_diff(s[-16:], s1) for s, s1 in zip(states, states1)))}


@pytest.fixture(scope="module")
def results():
    return run_interpreted(__file__)


@pytest.mark.parametrize("name", ["swiglu", "rms_norm", "headwise_norm_gate", "soft_cap_gates", "step",
                                  "step_projecting_gates", "slstm"])
def test_kernel_past_2_31_elements_matches_its_slice(results, name):
    assert results[name] <= 1e-6, results[name]  # the same programs on the same values: equal


@pytest.mark.parametrize("name", ["h", "dq", "dk", "dv", "di", "df"])
def test_chunkwise_past_2_31_elements_matches_its_slice(results, name):
    # the gate gradients go through float32 cumulative sums over all heads at once: equal up to their order
    assert results[f"chunkwise_{name}"] <= 1e-5, results[f"chunkwise_{name}"]


if __name__ == "__main__":
    import gc
    import time

    torch.set_num_threads(1)
    out = {}
    for part in (_fused, _chunkwise, _step, _slstm):
        tick = time.perf_counter()
        out.update(part())
        gc.collect()
        out[f"seconds_{part.__name__}"] = time.perf_counter() - tick
    print(json.dumps(out))
