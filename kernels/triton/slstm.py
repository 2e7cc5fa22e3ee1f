"""sLSTM forward and backward in Triton: the head-wise recurrent matmul fused with the gate math.

Each (batch block, head) is walked through the whole sequence by a group of SPLIT programs: program k owns
output units [k U, (k + 1) U) of the head, for all four gates, so the pointwise gate math and the states
c, n, m of its units stay in its registers. Its slice of the recurrent kernel (DH x 4 x U, bf16: 32 KB at
DH = 192, U = 16) is loaded once and kept resident across all steps. A step needs the whole h of the
previous step (forward) or the whole row of gate gradients of the next step (backward), written by the other
programs of the group: they are exchanged through global memory (L2) and the group synchronises each step
with a barrier built from one atomic counter (arrive after storing, wait before reading; the loads that do not
depend on the other programs are issued before the wait). All programs of a launch must then be resident at
once, so the group size is chosen so that the grid fits the multiprocessors (one program per SM suffices).

The CPU interpreter runs programs one after another, so there a group with SPLIT > 1 would deadlock: it uses
SPLIT = 1 (one program per head and batch block, the barrier a no-op), or, for tests of the split path, one
launch per step without the barrier (the launch boundary is the barrier). When the slice is too large to keep
resident (large batches leave few programs per head), it is streamed from L2 each step in blocks of BK input
units. No compile step at import: Triton compiles on first call, for the shapes seen.

The forward keeps the raw gates and the states of every step (float32) for the backward, which walks back
once; the weight gradients are then one batched matmul over all steps in PyTorch. The stabiliser m is a
constant for the gradient (y = o c / n does not depend on it).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, dot_precision, interpreting, kernel_dtype

__all__ = ["slstm_sequence"]

CPAD = 32  # int32 slots between the counters of two groups (one 128-byte line each)


@triton.jit
def _wait(ptr, target, SYNC: tl.constexpr):
    """Spin until the group's counter reaches target (acquire), then let the whole program go on."""
    if SYNC:
        v = tl.atomic_add(ptr, 0, sem="acquire")
        while v < target:
            v = tl.atomic_add(ptr, 0, sem="acquire")
        tl.debug_barrier()


@triton.jit
def _arrive(ptr, SYNC: tl.constexpr):
    """All threads' stores of this step are done (CTA barrier), then one release increment of the counter."""
    if SYNC:
        tl.debug_barrier()
        tl.atomic_add(ptr, 1, sem="release")


@triton.jit
def _stream(x, xrow, bm, wbase, wrow, wcol, DH, u, um, TRANS: tl.constexpr, BB: tl.constexpr, U: tl.constexpr,
            BK: tl.constexpr, PREC: tl.constexpr, WT: tl.constexpr):
    """x[xrow, :DH] @ W (DH x U) with W streamed from memory in blocks of BK input units.
    W[e, u] = wbase[e * wrow + u * wcol] (wrow/wcol: strides)."""
    acc = tl.zeros((BB, U), tl.float32)
    for c0 in range(0, DH, BK):
        e = c0 + tl.arange(0, BK)
        em = e < DH
        xb = tl.load(x + xrow[:, None] + e[None, :], mask=bm[:, None] & em[None, :], other=0.0,
                     cache_modifier=".cg")
        w = tl.load(wbase + e[:, None] * wrow + u[None, :] * wcol, mask=em[:, None] & um[None, :], other=0.0)
        acc += tl.dot(xb.to(WT), w, input_precision=PREC)
    return acc


@triton.jit
def _tile(cnt, B, S, NH, DH, BB: tl.constexpr, U: tl.constexpr):
    """This program's head, batch rows and units (with their masks), the offsets of its slot 0 in the
    (B, S + 1, NH, DH) state buffers, and its head group's step counter."""
    pb, hd, k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bidx = pb * BB + tl.arange(0, BB)
    u = k * U + tl.arange(0, U)
    um = u < DH
    bm = bidx < B
    mask = bm[:, None] & um[None, :]
    so = (bidx[:, None] * (S + 1) * NH + hd) * DH + u[None, :]
    return hd, bidx, bm, u, um, mask, so, cnt + (pb * NH + hd) * 32


@triton.jit
def _fw(wx, r, bias, st, raw, y, cnt, B, S, NH, DH, T0, T1, BB: tl.constexpr, DHP: tl.constexpr,
        U: tl.constexpr, BK: tl.constexpr, NSPLIT: tl.constexpr, RESIDENT: tl.constexpr, SYNC: tl.constexpr,
        PREC: tl.constexpr):
    """Steps [T0, T1). st: (4, B, S + 1, NH, DH) float32 states (c, n, h, m); slot T0 holds the incoming ones."""
    WT = r.dtype.element_ty
    hd, bidx, bm, u, um, mask, so, ctr = _tile(cnt, B, S, NH, DH, BB, U)
    SZ = B * (S + 1) * NH * DH
    ND = NH * DH
    c = tl.load(st + so + T0 * ND, mask=mask, other=0.0)
    n = tl.load(st + SZ + so + T0 * ND, mask=mask, other=0.0)
    m = tl.load(st + 3 * SZ + so + T0 * ND, mask=mask, other=0.0)
    b_i = tl.load(bias + (hd * 4 + 0) * DH + u, mask=um, other=0.0)[None, :]
    b_f = tl.load(bias + (hd * 4 + 1) * DH + u, mask=um, other=0.0)[None, :]
    b_z = tl.load(bias + (hd * 4 + 2) * DH + u, mask=um, other=0.0)[None, :]
    b_o = tl.load(bias + (hd * 4 + 3) * DH + u, mask=um, other=0.0)[None, :]
    rbase = r + hd * DH * 4 * DH  # R[hd, e, g, u] = rbase[e * 4 DH + g DH + u]
    kk = tl.arange(0, DHP)
    km = kk < DH
    if RESIDENT:
        woff = kk[:, None] * 4 * DH + u[None, :]
        wm = km[:, None] & um[None, :]
        w_i = tl.load(rbase + woff, mask=wm, other=0.0)
        w_f = tl.load(rbase + DH + woff, mask=wm, other=0.0)
        w_z = tl.load(rbase + 2 * DH + woff, mask=wm, other=0.0)
        w_o = tl.load(rbase + 3 * DH + woff, mask=wm, other=0.0)
    gx = wx + (bidx[:, None] * S * 4 * NH + hd) * DH + u[None, :]
    for t in range(T0, T1):
        go = t * 4 * ND
        xi = tl.load(gx + go, mask=mask, other=0.0).to(tl.float32) + b_i
        xf = tl.load(gx + go + ND, mask=mask, other=0.0).to(tl.float32) + b_f
        xz = tl.load(gx + go + 2 * ND, mask=mask, other=0.0).to(tl.float32) + b_z
        xo = tl.load(gx + go + 3 * ND, mask=mask, other=0.0).to(tl.float32) + b_o
        _wait(ctr, NSPLIT * (t - T0), SYNC)  # h of step t - 1 is complete
        hrow = 2 * SZ + ((bidx * (S + 1) + t) * NH + hd) * DH
        if RESIDENT:
            hv = tl.load(st + hrow[:, None] + kk[None, :], mask=bm[:, None] & km[None, :], other=0.0,
                         cache_modifier=".cg").to(WT)
            ri = xi + tl.dot(hv, w_i, input_precision=PREC)
            rf = xf + tl.dot(hv, w_f, input_precision=PREC)
            rz = xz + tl.dot(hv, w_z, input_precision=PREC)
            ro = xo + tl.dot(hv, w_o, input_precision=PREC)
        else:
            ri = xi + _stream(st, hrow, bm, rbase, 4 * DH, 1, DH, u, um, False, BB, U, BK, PREC, WT)
            rf = xf + _stream(st, hrow, bm, rbase + DH, 4 * DH, 1, DH, u, um, False, BB, U, BK, PREC, WT)
            rz = xz + _stream(st, hrow, bm, rbase + 2 * DH, 4 * DH, 1, DH, u, um, False, BB, U, BK, PREC, WT)
            ro = xo + _stream(st, hrow, bm, rbase + 3 * DH, 4 * DH, 1, DH, u, um, False, BB, U, BK, PREC, WT)
        logf = tl.minimum(rf, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(rf)))
        m_new = tl.where(n == 0.0, ri, tl.maximum(ri, logf + m))
        ig = tl.minimum(tl.exp(ri - m_new), 1.0)
        fg = tl.minimum(tl.exp(logf + m - m_new), 1.0)
        c = fg * c + ig * (2.0 * tl.sigmoid(2.0 * rz) - 1.0)
        n = fg * n + ig
        h = tl.sigmoid(ro) * c / n
        m = m_new
        gofs = (bidx[:, None] * S * 4 * NH + hd) * DH + u[None, :] + go
        tl.store(raw + gofs, ri, mask=mask)
        tl.store(raw + gofs + ND, rf, mask=mask)
        tl.store(raw + gofs + 2 * ND, rz, mask=mask)
        tl.store(raw + gofs + 3 * ND, ro, mask=mask)
        s1 = so + (t + 1) * ND
        tl.store(st + 2 * SZ + s1, h, mask=mask)
        tl.store(st + s1, c, mask=mask)
        tl.store(st + SZ + s1, n, mask=mask)
        tl.store(st + 3 * SZ + s1, m, mask=mask)
        tl.store(y + ((bidx[:, None] * S + t) * NH + hd) * DH + u[None, :], h.to(y.dtype.element_ty), mask=mask)
        _arrive(ctr, SYNC)


@triton.jit
def _bw(dy, dfin, r, st, raw, draw, dcar, dinit, cnt, B, S, NH, DH, T_hi, T_lo, TAIL: tl.constexpr,
        BB: tl.constexpr, DHP: tl.constexpr, U: tl.constexpr, BK: tl.constexpr, NSPLIT: tl.constexpr,
        RESIDENT: tl.constexpr, SYNC: tl.constexpr, PREC: tl.constexpr):
    """Back through steps T_hi - 1 down to T_lo. dfin/dinit: (3, B, NH, DH) gradients of (c, n, h) after the
    last / before the first step; dcar: (2, B, NH, DH) the (dc, dn) carried between launches. With TAIL, the
    gradient of the initial h is formed at the end (needs all gate gradients of step 0)."""
    WT = r.dtype.element_ty
    hd, bidx, bm, u, um, mask, so, ctr = _tile(cnt, B, S, NH, DH, BB, U)
    SZ = B * (S + 1) * NH * DH
    FZ = B * NH * DH
    ND = NH * DH
    fo = (bidx[:, None] * NH + hd) * DH + u[None, :]
    dc = tl.load(dcar + fo, mask=mask, other=0.0)
    dn = tl.load(dcar + FZ + fo, mask=mask, other=0.0)
    rbase = r + hd * DH * 4 * DH  # R^T[e, u] of gate g = R[hd, u, g, e] = rbase[u * 4 DH + g DH + e]
    ee = tl.arange(0, DHP)
    em = ee < DH
    if RESIDENT:
        voff = u[None, :] * 4 * DH + ee[:, None]
        vm = em[:, None] & um[None, :]
        v_i = tl.load(rbase + voff, mask=vm, other=0.0)
        v_f = tl.load(rbase + DH + voff, mask=vm, other=0.0)
        v_z = tl.load(rbase + 2 * DH + voff, mask=vm, other=0.0)
        v_o = tl.load(rbase + 3 * DH + voff, mask=vm, other=0.0)
    gb = (bidx[:, None] * S * 4 * NH + hd) * DH + u[None, :]
    n_it = T_hi - T_lo
    for it in range(0, n_it):
        t = T_hi - 1 - it
        go = gb + t * 4 * ND
        dyv = tl.load(dy + ((bidx[:, None] * S + t) * NH + hd) * DH + u[None, :], mask=mask, other=0.0)
        ri = tl.load(raw + go, mask=mask, other=0.0)
        rf = tl.load(raw + go + ND, mask=mask, other=0.0)
        rz = tl.load(raw + go + 2 * ND, mask=mask, other=0.0)
        ro = tl.load(raw + go + 3 * ND, mask=mask, other=0.0)
        s1 = so + (t + 1) * ND
        c = tl.load(st + s1, mask=mask, other=0.0)
        n = tl.load(st + SZ + s1, mask=mask, other=1.0)
        m = tl.load(st + 3 * SZ + s1, mask=mask, other=0.0)
        c_prev = tl.load(st + s1 - ND, mask=mask, other=0.0)
        n_prev = tl.load(st + SZ + s1 - ND, mask=mask, other=0.0)
        m_prev = tl.load(st + 3 * SZ + s1 - ND, mask=mask, other=0.0)
        if t + 1 >= S:
            dh = tl.load(dfin + 2 * FZ + fo, mask=mask, other=0.0)
        else:
            _wait(ctr, NSPLIT * it, SYNC)  # gate gradients of step t + 1 are complete
            grow = ((bidx * S + t + 1) * 4 * NH + hd) * DH
            if RESIDENT:
                rm_ = bm[:, None] & em[None, :]
                g0 = tl.load(draw + grow[:, None] + ee[None, :], mask=rm_, other=0.0, cache_modifier=".cg")
                dh = tl.dot(g0.to(WT), v_i, input_precision=PREC)
                g1 = tl.load(draw + grow[:, None] + ND + ee[None, :], mask=rm_, other=0.0, cache_modifier=".cg")
                dh += tl.dot(g1.to(WT), v_f, input_precision=PREC)
                g2 = tl.load(draw + grow[:, None] + 2 * ND + ee[None, :], mask=rm_, other=0.0,
                             cache_modifier=".cg")
                dh += tl.dot(g2.to(WT), v_z, input_precision=PREC)
                g3 = tl.load(draw + grow[:, None] + 3 * ND + ee[None, :], mask=rm_, other=0.0,
                             cache_modifier=".cg")
                dh += tl.dot(g3.to(WT), v_o, input_precision=PREC)
            else:
                dh = _stream(draw, grow, bm, rbase, 1, 4 * DH, DH, u, um, True, BB, U, BK, PREC, WT)
                dh += _stream(draw, grow + ND, bm, rbase + DH, 1, 4 * DH, DH, u, um, True, BB, U, BK, PREC, WT)
                dh += _stream(draw, grow + 2 * ND, bm, rbase + 2 * DH, 1, 4 * DH, DH, u, um, True, BB, U, BK,
                              PREC, WT)
                dh += _stream(draw, grow + 3 * ND, bm, rbase + 3 * DH, 1, 4 * DH, DH, u, um, True, BB, U, BK,
                              PREC, WT)
        dh += dyv.to(tl.float32)
        logf = tl.minimum(rf, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(rf)))
        ig_raw = tl.exp(ri - m)
        fg_raw = tl.exp(logf + m_prev - m)
        ig = tl.minimum(ig_raw, 1.0)
        fg = tl.minimum(fg_raw, 1.0)
        z = 2.0 * tl.sigmoid(2.0 * rz) - 1.0
        o = tl.sigmoid(ro)
        dc += dh * o / n
        dn -= dh * o * c / (n * n)
        d_o = dh * c / n * o * (1.0 - o)
        d_z = dc * ig * (1.0 - z * z)
        d_i = tl.where(ig_raw <= 1.0, (dc * z + dn) * ig, 0.0)
        d_f = tl.where(fg_raw <= 1.0, (dc * c_prev + dn * n_prev) * fg * tl.sigmoid(-rf), 0.0)
        tl.store(draw + go, d_i, mask=mask)
        tl.store(draw + go + ND, d_f, mask=mask)
        tl.store(draw + go + 2 * ND, d_z, mask=mask)
        tl.store(draw + go + 3 * ND, d_o, mask=mask)
        dc = dc * fg
        dn = dn * fg
        _arrive(ctr, SYNC)
    tl.store(dcar + fo, dc, mask=mask)
    tl.store(dcar + FZ + fo, dn, mask=mask)
    if TAIL:
        tl.store(dinit + fo, dc, mask=mask)
        tl.store(dinit + FZ + fo, dn, mask=mask)
        if S == 0:
            dh = tl.load(dfin + 2 * FZ + fo, mask=mask, other=0.0)
        else:
            _wait(ctr, NSPLIT * n_it, SYNC)
            grow = (bidx * S * 4 * NH + hd) * DH
            dh = _stream(draw, grow, bm, rbase, 1, 4 * DH, DH, u, um, True, BB, U, BK, PREC, WT)
            dh += _stream(draw, grow + ND, bm, rbase + DH, 1, 4 * DH, DH, u, um, True, BB, U, BK, PREC, WT)
            dh += _stream(draw, grow + 2 * ND, bm, rbase + 2 * DH, 1, 4 * DH, DH, u, um, True, BB, U, BK, PREC, WT)
            dh += _stream(draw, grow + 3 * ND, bm, rbase + 3 * DH, 1, 4 * DH, DH, u, um, True, BB, U, BK, PREC, WT)
        tl.store(dinit + 2 * FZ + fo, dh, mask=mask)


BB = 16  # batch rows per program: the smallest tensor-core tile
BK = 32  # input units per block when the recurrent kernel is streamed
RESIDENT_BYTES = 64 * 1024  # largest slice of R kept resident in one program
_FORCE: dict | None = None  # tests: override the plan (U, stepwise, resident, sync)
_TUNE = {"fw_warps": 4, "bw_warps": 4}
_SMS: dict = {}


def _plan(B, NH, DH, dtype, device) -> dict:
    """Units per program U (a power of two >= 16), group size SPLIT = ceil(DH / U), and how to synchronise."""
    DHP = max(16, triton.next_power_of_2(DH))
    nbb = triton.cdiv(B, BB)
    U = DHP
    if not interpreting():
        if device not in _SMS:
            _SMS[device] = torch.cuda.get_device_properties(device).multi_processor_count
        for cand in (16, 32, 64, 128):  # the most programs whose grid still fits the SMs (co-residency)
            if cand < DHP and nbb * NH * triton.cdiv(DH, cand) <= _SMS[device]:
                U = cand
                break
    plan = {"U": U, "stepwise": False, "sync": None, "resident": None}
    plan.update(_FORCE or {})
    split = triton.cdiv(DH, plan["U"])
    if plan["sync"] is None:
        plan["sync"] = split > 1 and not plan["stepwise"]
    if plan["resident"] is None:
        plan["resident"] = DHP * plan["U"] * 4 * torch.tensor([], dtype=dtype).element_size() <= RESIDENT_BYTES
    assert not (split > 1 and not plan["stepwise"] and not plan["sync"]), "a split group needs its barrier"
    assert not (split > 1 and plan["sync"] and interpreting()), "the interpreter runs programs one at a time"
    plan.update(DHP=DHP, SPLIT=split, grid=(nbb, NH, split))
    return plan


class _SLSTMFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, wx, r, b, c0, n0, h0, m0):
        B, S, _, NH, DH = wx.shape
        dtype = kernel_dtype(wx)
        st = torch.zeros(4, B, S + 1, NH, DH, device=wx.device, dtype=torch.float32)
        for slot, init in enumerate((c0, n0, h0, m0)):
            if init is not None:
                st[slot, :, 0] = init
        raw = torch.empty(B, S, 4, NH, DH, device=wx.device, dtype=torch.float32)
        y = torch.empty(B, S, NH, DH, device=wx.device, dtype=wx.dtype)
        rk = r.to(dtype).contiguous()
        p = _plan(B, NH, DH, dtype, wx.device)
        cnt = torch.zeros(p["grid"][0] * NH * CPAD, device=wx.device, dtype=torch.int32)
        args = (wx.contiguous(), rk, b.float().contiguous(), st, raw, y, cnt, B, S, NH, DH)
        meta = dict(BB=BB, DHP=p["DHP"], U=p["U"], BK=BK, NSPLIT=p["SPLIT"], RESIDENT=p["resident"],
                    PREC=dot_precision(dtype), num_warps=_TUNE["fw_warps"])
        for t0, t1 in ([(t, t + 1) for t in range(S)] if p["stepwise"] else [(0, S)]):
            _fw[p["grid"]](*args, t0, t1, SYNC=p["sync"], **meta)
        ctx.save_for_backward(rk, st, raw, c0, n0, m0)
        ctx.meta = (wx.dtype, r.dtype, b.dtype, p)
        last = st[:, :, S]
        return y, last[0], last[1], last[2], last[3]

    @staticmethod
    def backward(ctx, dy, dc, dn, dh, _dm):
        rk, st, raw, c0, n0, m0 = ctx.saved_tensors
        wx_dtype, r_dtype, b_dtype, p = ctx.meta
        B, S1, NH, DH = st.shape[1:]
        S = S1 - 1
        dev = st.device
        dfin = torch.stack([torch.zeros(B, NH, DH, device=dev) if x is None else x.float()
                            for x in (dc, dn, dh)]).contiguous()
        dy = torch.zeros(B, S, NH, DH, device=dev) if dy is None else dy.contiguous()
        draw = torch.empty_like(raw)
        dinit = torch.empty_like(dfin)
        dcar = dfin[:2].clone()
        cnt = torch.zeros(p["grid"][0] * NH * CPAD, device=dev, dtype=torch.int32)
        args = (dy, dfin, rk, st, raw, draw, dcar, dinit, cnt, B, S, NH, DH)
        meta = dict(BB=BB, DHP=p["DHP"], U=p["U"], BK=BK, NSPLIT=p["SPLIT"], RESIDENT=p["resident"],
                    PREC=dot_precision(rk.dtype), num_warps=_TUNE["bw_warps"])
        if p["stepwise"]:
            for t in range(S - 1, -1, -1):
                _bw[p["grid"]](*args, t + 1, t, TAIL=False, SYNC=False, **meta)
            _bw[p["grid"]](*args, 0, 0, TAIL=True, SYNC=False, **meta)
        else:
            _bw[p["grid"]](*args, S, 0, TAIL=True, SYNC=p["sync"], **meta)
        dr = torch.einsum("bshd,bsghe->hdge", st[2, :, :S], draw).to(r_dtype)
        db = draw.sum((0, 1)).transpose(0, 1).to(b_dtype)
        # m_initial scales (c0, n0): its gradient is the one of their logarithm.
        dm0 = None
        if m0 is not None and ctx.needs_input_grad[6]:
            dm0 = (dinit[0] * st[0, :, 0] + dinit[1] * st[1, :, 0]).to(m0.dtype)
        grads = [None if x is None else g.to(x.dtype) for x, g in zip((c0, n0), dinit[:2])]
        dh0 = dinit[2].to(wx_dtype) if ctx.needs_input_grad[5] else None
        return draw.to(wx_dtype), dr, db, grads[0], grads[1], dh0, dm0


def slstm_sequence(
    wx, r, b, *, c_initial=None, n_initial=None, h_initial=None, m_initial=None, return_last_states=False,
):
    """sLSTM over a sequence (slstm_native signature): y (B, S, NH, DH), states (c, n, h, m) in float32."""
    check_device(wx, r, b, c_initial, n_initial, h_initial, m_initial)
    y, c, n, h, m = _SLSTMFn.apply(wx, r, b, c_initial, n_initial, h_initial, m_initial)
    return (y, (c, n, h, m)) if return_last_states else y
