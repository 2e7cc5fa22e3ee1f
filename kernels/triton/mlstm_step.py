"""mLSTM recurrent step (generation) and fused sequence (short prompts) in Triton.

Decoding is bound by reading and writing the float32 state C, so one launch does everything: gate math,
state update, output. Each program owns a (DHQK x BV) slab of C of one head, which keeps the q.C reduction
inside the program; n and m are recomputed by every program (DHQK values) and stored by the first.
`mlstm_sequence` runs the same update for a whole prompt in one launch, with the state kept in registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device

__all__ = ["mlstm_sequence", "mlstm_step", "mlstm_step_projecting_gates"]


@triton.jit
def _update(qt, kt, vt, it, ft, c, n, m, scale, eps):
    """One step of the cell on an owned slab: returns h (BV,), C, n, m (all float32)."""
    logf = tl.minimum(ft, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(ft)))  # logsigmoid, stable both ways
    m_new = tl.maximum(logf + m, it)
    fa = tl.exp(logf + m - m_new)
    ia = tl.exp(it - m_new)
    c = fa * c + (ia * kt)[:, None] * vt[None, :]
    n = fa * n + ia * kt
    qs = qt * scale
    num = tl.sum(qs[:, None] * c, 0)
    den = tl.maximum(tl.abs(tl.sum(qs * n, 0)), tl.exp(-m_new)) + eps
    return num / den, c, n, m_new


@triton.jit
def _slab(pv, bh, DHQK, DHV, DQ: tl.constexpr, BV: tl.constexpr):
    """Offsets and masks of the (DHQK x BV) slab of C that program (pv, bh) owns."""
    d = tl.arange(0, DQ)
    dv = pv * BV + tl.arange(0, BV)
    md, mv = d < DHQK, dv < DHV
    return d, dv, md, mv, bh * DHQK * DHV + d[:, None] * DHV + dv[None, :], md[:, None] & mv[None, :]


@triton.jit
def _store_state(cs, ns, ms, c_out, n_out, m_out, pv, bh, d, md, coff, cmask, DHQK):
    tl.store(c_out + coff, cs, mask=cmask)  # c_out may be c itself: each program owns its slab
    if pv == 0:
        tl.store(n_out + bh * DHQK + d, ns, mask=md)
        tl.store(m_out + bh, ms)


@triton.jit
def _step_kernel(q, k, v, i, f, c, n, m, h, c_out, n_out, m_out, NH, DHQK, DHV, T,
                 sqb, sqh, sqt, svb, svh, svt, sgb, sgh, sgt, scale, eps, DQ: tl.constexpr, BV: tl.constexpr):
    """T recurrent steps (T = 1 for the step kernel) for one (head, DHV block). q and k share strides,
    i and f too, so slices of a fused projection are read in place."""
    pv, bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # bh * DHQK * DHV: large batches
    b, hd = bh // NH, bh % NH
    d, dv, md, mv, coff, cmask = _slab(pv, bh, DHQK, DHV, DQ, BV)
    cs = tl.load(c + coff, mask=cmask, other=0.0).to(tl.float32)
    ns = tl.load(n + bh * DHQK + d, mask=md, other=0.0).to(tl.float32)
    ms = tl.load(m + bh).to(tl.float32)
    for t in range(T):
        qk_at = b * sqb + hd * sqh + t * sqt + d
        qt = tl.load(q + qk_at, mask=md, other=0.0).to(tl.float32)
        kt = tl.load(k + qk_at, mask=md, other=0.0).to(tl.float32)
        vt = tl.load(v + b * svb + hd * svh + t * svt + dv, mask=mv, other=0.0).to(tl.float32)
        gate_at = b * sgb + hd * sgh + t * sgt
        it = tl.load(i + gate_at).to(tl.float32)
        ft = tl.load(f + gate_at).to(tl.float32)
        ht, cs, ns, ms = _update(qt, kt, vt, it, ft, cs, ns, ms, scale, eps)
        tl.store(h + (bh * T + t) * DHV + dv, ht.to(h.dtype.element_ty), mask=mv)
    _store_state(cs, ns, ms, c_out, n_out, m_out, pv, bh, d, md, coff, cmask, DHQK)


@triton.jit
def _soft_capped(g, cap, CAP: tl.constexpr):
    if CAP:
        g = cap * (2.0 * tl.sigmoid(2.0 * g / cap) - 1.0)
    return g


@triton.jit
def _gates(x, wi, bi, wf, bf, row, D, cap, CAP: tl.constexpr, BD: tl.constexpr):
    """(x . wi[row] + bi[row], x . wf[row] + bf[row]) in float32, then cap * tanh(. / cap). Both in one
    loop, x read once: each pass issues its three loads together, and up to D = 4096 there is one pass
    (the products are latency-bound: a decode step spent more time here than on its slab of C)."""
    acc_i = tl.zeros([BD], dtype=tl.float32)
    acc_f = tl.zeros([BD], dtype=tl.float32)
    for d0 in range(0, D, BD):
        d = d0 + tl.arange(0, BD)
        xv = tl.load(x + d, mask=d < D, other=0.0).to(tl.float32)
        acc_i += xv * tl.load(wi + row * D + d, mask=d < D, other=0.0).to(tl.float32)
        acc_f += xv * tl.load(wf + row * D + d, mask=d < D, other=0.0).to(tl.float32)
    g_i = tl.sum(acc_i, 0) + tl.load(bi + row).to(tl.float32)
    g_f = tl.sum(acc_f, 0) + tl.load(bf + row).to(tl.float32)
    return _soft_capped(g_i, cap, CAP), _soft_capped(g_f, cap, CAP)


@triton.jit
def _step_gates_kernel(q, k, v, x, wi, bi, wf, bf, c, n, m, h, c_out, n_out, m_out, NH, D, DHQK, DHV,
                       sqb, sqh, svb, svh, sxb, cap, scale, eps, CAP: tl.constexpr, DQ: tl.constexpr,
                       BV: tl.constexpr, BD: tl.constexpr, NB: tl.constexpr):
    """One step whose gates are projected here from the block's normed input x: every program computes
    the head's two dot products (L2-resident weights), which saves the gate product, its split-K
    reduction and the soft-cap launches of a decode step. A program updates NB slabs of C."""
    pv, bh = tl.program_id(0), tl.program_id(1).to(tl.int64)  # bh * DHQK * DHV: large batches
    b, hd = bh // NH, bh % NH
    d = tl.arange(0, DQ)  # the loads that do not need the gates are issued before their products
    n0 = tl.load(n + bh * DHQK + d, mask=d < DHQK, other=0.0).to(tl.float32)
    m0 = tl.load(m + bh).to(tl.float32)
    qt = tl.load(q + b * sqb + hd * sqh + d, mask=d < DHQK, other=0.0).to(tl.float32)
    kt = tl.load(k + b * sqb + hd * sqh + d, mask=d < DHQK, other=0.0).to(tl.float32)
    it, ft = _gates(x + b * sxb, wi, bi, wf, bf, hd, D, cap, CAP, BD)
    for j in range(NB):
        slab = pv * NB + j
        d, dv, md, mv, coff, cmask = _slab(slab, bh, DHQK, DHV, DQ, BV)
        cs = tl.load(c + coff, mask=cmask, other=0.0).to(tl.float32)
        vt = tl.load(v + b * svb + hd * svh + dv, mask=mv, other=0.0).to(tl.float32)
        ht, cs, ns, ms = _update(qt, kt, vt, it, ft, cs, n0, m0, scale, eps)
        tl.store(h + bh * DHV + dv, ht.to(h.dtype.element_ty), mask=mv)
        _store_state(cs, ns, ms, c_out, n_out, m_out, slab, bh, d, md, coff, cmask, DHQK)


def _dense(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _launch(kernel, B, NH, T, DHQK, DHV, dtype, dev, c, n, m, c_out, inputs, sizes, strides, **constexprs):
    """Allocate h and the new states, launch `kernel` over (DHV blocks / NB, B * NH), return h, (c, n, m)."""
    h = torch.empty(B, NH, T, DHV, device=dev, dtype=dtype)
    if c_out is None:
        c_out = torch.empty(B, NH, DHQK, DHV, device=dev, dtype=torch.float32)
    n_out = torch.empty(B, NH, DHQK, device=dev, dtype=torch.float32)
    m_out = torch.empty(B, NH, 1, device=dev, dtype=torch.float32)
    DQ = max(16, triton.next_power_of_2(DHQK))
    # Enough programs to spread the state over the SMs at batch 1, slabs of >= 4 KB each.
    BV = max(16, min(triton.next_power_of_2(DHV), 4096 // DQ))
    if constexprs.get("NB", 1) is None:  # each program repeats the per-head work: aim at ~512 programs
        nb, slabs = 1, triton.cdiv(DHV, BV)
        while nb < slabs and B * NH * slabs // (2 * nb) >= 512:
            nb *= 2
        constexprs["NB"] = nb
    grid = (triton.cdiv(DHV, BV * constexprs.get("NB", 1)), B * NH)
    kernel[grid](*inputs, c.contiguous(), n.contiguous(), m.contiguous(), h, c_out, n_out, m_out, *sizes, *strides,
                 DQ=DQ, BV=BV, num_warps=4 if DQ * BV >= 4096 else 2, **constexprs)
    return h, (c_out, n_out, m_out)


def _zero_states(B, NH, DHQK, DHV, dev):
    return (torch.zeros(B, NH, DHQK, DHV, device=dev), torch.zeros(B, NH, DHQK, device=dev),
            torch.zeros(B, NH, 1, device=dev))


def _run(q, k, v, i, f, c, n, m, eps, c_out=None):
    """q, k (B, NH, T, DHQK), v (B, NH, T, DHV), i, f (B, NH, T), any strides; states as in mlstm_step."""
    B, NH, T, DHQK = q.shape
    DHV = v.shape[-1]
    check_device(q, k, v, i, f, c, n, m)
    if c is None:
        c, n, m = _zero_states(B, NH, DHQK, DHV, q.device)
    q, k, v, i, f = map(_dense, (q, k, v, i, f))
    if k.stride() != q.stride():
        q, k = q.contiguous(), k.contiguous()
    if f.stride() != i.stride():
        i, f = i.contiguous(), f.contiguous()
    return _launch(_step_kernel, B, NH, T, DHQK, DHV, q.dtype, q.device, c, n, m, c_out, (q, k, v, i, f),
                   (NH, DHQK, DHV, T), (*q.stride()[:3], *v.stride()[:3], *i.stride()[:3], DHQK ** -0.5, eps))


def mlstm_step(q, k, v, i, f, c, n, m, *, eps=1e-6, c_out=None):
    """One step: q, k (B, NH, DHQK), v (B, NH, DHV), i, f (B, NH, 1) -> h (B, NH, DHV), float32 (c, n, m).

    `c_out`: where to write the new C; it may be the contiguous float32 `c` itself (updated in place:
    a captured decode step then needs no copy of the largest state)."""
    h, states = _run(q[:, :, None], k[:, :, None], v[:, :, None], i, f, c, n, m, eps, c_out)
    return h[:, :, 0], states


def mlstm_step_projecting_gates(q, k, v, x, gate_weights, gate_soft_cap, c, n, m, *, eps=1e-6, c_out=None,
                                slabs_per_program=None):
    """mlstm_step with the gates projected inside the kernel: x (B, D) is the normed block input and
    gate_weights = (w_i, b_i, w_f, b_f), w (NH, D), b (NH,): i = soft_cap(x w_i^T + b_i), f likewise.
    slabs_per_program: DHV blocks of C per program (a power of two; default: by batch size)."""
    B, NH, DHQK = q.shape
    DHV, D = v.shape[-1], x.shape[-1]
    check_device(q, k, v, x, *gate_weights, c, n, m)
    if c is None:
        c, n, m = _zero_states(B, NH, DHQK, DHV, q.device)
    q, k, v, x = map(_dense, (q, k, v, x))
    if k.stride() != q.stride():
        q, k = q.contiguous(), k.contiguous()
    w_i, b_i, w_f, b_f = (w.contiguous() for w in gate_weights)
    h, states = _launch(_step_gates_kernel, B, NH, 1, DHQK, DHV, q.dtype, q.device, c, n, m, c_out,
                        (q, k, v, x, w_i, b_i, w_f, b_f), (NH, D, DHQK, DHV),
                        (*q.stride()[:2], *v.stride()[:2], x.stride(0), float(gate_soft_cap or 1.0),
                         DHQK ** -0.5, eps), NB=slabs_per_program, CAP=gate_soft_cap is not None,
                        BD=min(4096, triton.next_power_of_2(D)))  # the 7B's gates in one pass: 130 registers
    return h[:, :, 0], states


def mlstm_sequence(
    q, k, v, i, f, *, c_initial=None, n_initial=None, m_initial=None,
    return_last_states=False, chunk_size=None, eps=1e-6,
):
    """The recurrence over a whole (short) sequence in one launch; chunkwise signature, no autograd."""
    B, NH, _, DHQK = q.shape
    if c_initial is not None and (n_initial is None or m_initial is None):
        zeros = q.new_zeros
        n_initial = zeros(B, NH, DHQK, dtype=torch.float32) if n_initial is None else n_initial
        m_initial = zeros(B, NH, 1, dtype=torch.float32) if m_initial is None else m_initial
    h, states = _run(q, k, v, i, f, c_initial, n_initial, m_initial, eps)
    return (h, states) if return_last_states else h
