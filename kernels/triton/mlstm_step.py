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

__all__ = ["mlstm_sequence", "mlstm_step"]


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
def _step_kernel(q, k, v, i, f, c, n, m, h, c_out, n_out, m_out, NH, DHQK, DHV, T,
                 sqb, sqh, sqt, svb, svh, svt, sgb, sgh, sgt, scale, eps, DQ: tl.constexpr, BV: tl.constexpr):
    """T recurrent steps (T = 1 for the step kernel) for one (head, DHV block). q and k share strides,
    i and f too, so slices of a fused projection are read in place."""
    pv, bh = tl.program_id(0), tl.program_id(1)
    b, hd = bh // NH, bh % NH
    d = tl.arange(0, DQ)
    dv = pv * BV + tl.arange(0, BV)
    md, mv = d < DHQK, dv < DHV
    coff = bh * DHQK * DHV + d[:, None] * DHV + dv[None, :]
    cmask = md[:, None] & mv[None, :]
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
    tl.store(c_out + coff, cs, mask=cmask)  # c_out may be c itself: each program owns its slab
    if pv == 0:
        tl.store(n_out + bh * DHQK + d, ns, mask=md)
        tl.store(m_out + bh, ms)


def _dense(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _run(q, k, v, i, f, c, n, m, eps, c_out=None):
    """q, k (B, NH, T, DHQK), v (B, NH, T, DHV), i, f (B, NH, T), any strides; states as in mlstm_step."""
    B, NH, T, DHQK = q.shape
    DHV = v.shape[-1]
    check_device(q, k, v, i, f, c, n, m)
    dev = q.device
    if c is None:
        c = torch.zeros(B, NH, DHQK, DHV, device=dev)
        n = torch.zeros(B, NH, DHQK, device=dev)
        m = torch.zeros(B, NH, 1, device=dev)
    q, k, v, i, f = map(_dense, (q, k, v, i, f))
    if k.stride() != q.stride():
        q, k = q.contiguous(), k.contiguous()
    if f.stride() != i.stride():
        i, f = i.contiguous(), f.contiguous()
    h = torch.empty(B, NH, T, DHV, device=dev, dtype=q.dtype)
    if c_out is None:
        c_out = torch.empty(B, NH, DHQK, DHV, device=dev, dtype=torch.float32)
    n_out = torch.empty(B, NH, DHQK, device=dev, dtype=torch.float32)
    m_out = torch.empty(B, NH, 1, device=dev, dtype=torch.float32)
    DQ = max(16, triton.next_power_of_2(DHQK))
    # Enough programs to spread the state over the SMs at batch 1, slabs of >= 4 KB each.
    BV = max(16, min(triton.next_power_of_2(DHV), 4096 // DQ))
    grid = (triton.cdiv(DHV, BV), B * NH)
    _step_kernel[grid](q, k, v, i, f, c.contiguous(), n.contiguous(), m.contiguous(), h, c_out, n_out, m_out,
                       NH, DHQK, DHV, T, *q.stride()[:3], *v.stride()[:3], *i.stride()[:3], DHQK ** -0.5, eps,
                       DQ=DQ, BV=BV, num_warps=4 if DQ * BV >= 4096 else 2)
    return h, (c_out, n_out, m_out)


def mlstm_step(q, k, v, i, f, c, n, m, *, eps=1e-6, c_out=None):
    """One step: q, k (B, NH, DHQK), v (B, NH, DHV), i, f (B, NH, 1) -> h (B, NH, DHV), float32 (c, n, m).

    `c_out`: where to write the new C; it may be the contiguous float32 `c` itself (updated in place:
    a captured decode step then needs no copy of the largest state)."""
    h, states = _run(q[:, :, None], k[:, :, None], v[:, :, None], i, f, c, n, m, eps, c_out)
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
