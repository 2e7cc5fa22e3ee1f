"""sLSTM forward and backward in Triton: the head-wise recurrent matmul fused with the gate math.

Each (batch block, head) is walked through the whole sequence by a group of SPLIT programs: program k owns
output units [k U, (k + 1) U) of the head, for all four gates, so the pointwise gate math and the states
c, n, m of its units stay in its registers. Its slice of the recurrent kernel (DH x 4 x U, bf16: 24 KB at
DH = 192, U = 16) is loaded once and kept resident across all steps. A step needs the whole h of the
previous step (forward) or the whole row of gate gradients of the next step (backward), written by the other
programs of the group, in the kernel's type, into a fresh slot of a zeroed buffer. The value is its own
flag: +0.0 is written as -0.0, so a word is written once its bits are non-zero, and a reader spins on
volatile loads of the row until no word is zero. No atomics and no fences (each 16- or 32-bit store lands
whole), so the per-step barrier is the L2 round trip of the data itself; the loads that do not depend on the
other programs are issued first. All programs of a launch must then be resident at once, so the group size
is chosen so that the grid fits the multiprocessors (one program per SM suffices).

The CPU interpreter runs programs one after another, so there a group with SPLIT > 1 would spin forever: it
uses SPLIT = 1 (one program per head and batch block, whose reads find its own earlier writes), or, for tests
of the split path, one launch per step (the launch boundary is the barrier). When the slice is too large to
keep resident (large batches leave few programs per head), it is streamed from L2 each step in blocks of BK
input units. No compile step at import: Triton compiles on first call, for the shapes seen.

The forward keeps the raw gates and the states of every step (float32) for the backward, which walks back
once; the weight gradients are then one matmul over all steps in PyTorch. The stabiliser m is a
constant for the gradient (y = o c / n does not depend on it).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, dot_precision, interpreting, kernel_dtype

__all__ = ["slstm_sequence"]


@triton.jit
def _bits(x):
    """The bit pattern of x (16 or 32 bits) as a signed integer."""
    if x.dtype.primitive_bitwidth == 16:
        bits = x.to(tl.int16, bitcast=True)
    else:
        bits = x.to(tl.int32, bitcast=True)
    return bits


@triton.jit
def _mark(x):
    """x as written for the other programs: +0.0 becomes -0.0 (same value), so a written word is never zero."""
    bits = _bits(x)
    return (bits | ((bits == 0).to(bits.dtype) << (x.dtype.primitive_bitwidth - 1))).to(x.dtype, bitcast=True)


@triton.jit
def _zeros(x):
    """1 if a word of x reads as zero (not yet written), else 0."""
    return tl.max((_bits(x) == 0).to(tl.int32))


@triton.jit
def _poll(x, xrow, xm, e0, DH, KA: tl.constexpr, KB: tl.constexpr):
    """Input units [e0, e0 + KA) and [e0 + KA, e0 + KA + KB) of the rows x[xrow + e] (xm: row mask), once
    every word is written: both blocks in flight at once, spinning on volatile loads until none reads as zero."""
    ea = e0 + tl.arange(0, KA)
    eb = e0 + KA + tl.arange(0, KB)
    pa, ma = x + xrow + ea[None, None, :], xm & (ea < DH)[None, None, :]
    pb, mb = x + xrow + eb[None, None, :], xm & (eb < DH)[None, None, :]
    xa = tl.load(pa, mask=ma, other=1.0, volatile=True)
    xb = tl.load(pb, mask=mb, other=1.0, volatile=True)
    while _zeros(xa) + _zeros(xb) > 0:
        xa = tl.load(pa, mask=ma, other=1.0, volatile=True)
        xb = tl.load(pb, mask=mb, other=1.0, volatile=True)
    return xa, xb


@triton.jit
def _wblock(wbase, g_s, e_s, u_s, e0, DH, u, um, K: tl.constexpr):
    """Input units [e0, e0 + K) of the four gates' W[g][e, u] = wbase[g g_s + e e_s + u u_s]: (4, K, U)."""
    e = e0 + tl.arange(0, K)
    return tl.load(wbase + tl.arange(0, 4)[:, None, None] * g_s + e[None, :, None] * e_s + u[None, None, :] * u_s,
                   mask=(e < DH)[None, :, None] & um[None, None, :], other=0.0)


@triton.jit
def _dot4(acc, x, w, PREC: tl.constexpr):
    """acc[g] += x[g] @ w[g], x (1 or 4, BB, K) broadcast over the gates. One batched dot keeps one warp per
    gate: separate dots chained into one result would each run on every warp."""
    return tl.dot(tl.broadcast_to(x, (4, x.shape[1], x.shape[2])), w, acc, input_precision=PREC)


@triton.jit
def _rows(acc, x, xrow, xm, wa, wb, wbase, g_s, e_s, u_s, DH, u, um, KA: tl.constexpr, KB: tl.constexpr,
          BK: tl.constexpr, RESIDENT: tl.constexpr, PREC: tl.constexpr):
    """acc[g] += x[g] @ W[g] over all DH input units, x[g][b, e] = x[xrow[g, b] + e] polled (written by the
    group; xrow (1 or 4, BB, 1), broadcast over the gates when 1): with the resident blocks wa (units [0, KA))
    and wb ([KA, KA + KB)), or streaming W from memory in blocks of BK."""
    if RESIDENT:
        xa, xb = _poll(x, xrow, xm, 0, DH, KA, KB)
        acc = _dot4(_dot4(acc, xa, wa, PREC), xb, wb, PREC)
    else:
        for e0 in range(0, DH, 2 * BK):
            xa, xb = _poll(x, xrow, xm, e0, DH, BK, BK)
            acc = _dot4(acc, xa, _wblock(wbase, g_s, e_s, u_s, e0, DH, u, um, BK), PREC)
            acc = _dot4(acc, xb, _wblock(wbase, g_s, e_s, u_s, e0 + BK, DH, u, um, BK), PREC)
    return acc


@triton.jit
def _split4(a):
    """(4, BB, U) -> the four gates, (BB, U) each."""
    a = tl.reshape(tl.permute(a, (1, 2, 0)), (a.shape[1], a.shape[2], 2, 2))  # [..., k, j]: gate 2 k + j
    iz, fo = tl.split(a)
    i, z = tl.split(iz)
    f, o = tl.split(fo)
    return i, f, z, o


@triton.jit
def _sum4(a):
    """(4, BB, U) summed over the gates. Through _split4, which moves the gates (one per warp after the dot)
    into each thread: tl.sum(a, 0) would leave its result, and all the math after it, replicated in every warp."""
    i, f, z, o = _split4(a)
    return i + f + z + o


@triton.jit
def _join4(i, f, z, o):
    """The inverse of _split4."""
    a = tl.join(tl.join(i, z), tl.join(f, o))
    return tl.permute(tl.reshape(a, (i.shape[0], i.shape[1], 4)), (2, 0, 1))


@triton.jit
def _tile(B, S, NH, DH, BB: tl.constexpr, U: tl.constexpr):
    """This program's head, batch rows and units (with their masks), the offsets of its slot 0 in the
    (B, S + 1, NH, DH) state buffers and of its step 0 in the (B, S, 4, NH, DH) gate buffers (4, BB, U)."""
    pb, hd, k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bidx = (pb * BB + tl.arange(0, BB)).to(tl.int64)  # B (S + 1) NH DH and the gate buffers pass 2**31
    u = k * U + tl.arange(0, U)
    um = u < DH
    bm = bidx < B
    mask = bm[:, None] & um[None, :]
    so = (bidx[:, None] * (S + 1) * NH + hd) * DH + u[None, :]
    go = ((bidx[None, :, None] * S * 4 + tl.arange(0, 4)[:, None, None]) * NH + hd) * DH + u[None, None, :]
    return hd, bidx, bm, u, um, mask, so, go


@triton.jit
def _fw(wx, r, bias, st, hx, raw, y, B, S, NH, DH, T0, T1, BB: tl.constexpr, U: tl.constexpr, KA: tl.constexpr,
        KB: tl.constexpr, BK: tl.constexpr, RESIDENT: tl.constexpr, PREC: tl.constexpr):
    """Steps [T0, T1). st: (4, B, S + 1, NH, DH) float32 states (c, n, h, m), slot T0 holds the incoming ones;
    hx: (B, S + 1, NH, DH) h again in the kernel's type, the exchange buffer (zero beyond slot T0)."""
    hd, bidx, bm, u, um, mask, so, go = _tile(B, S, NH, DH, BB, U)
    SZ = tl.cast(B, tl.int64) * (S + 1) * NH * DH
    ND = NH * DH
    c = tl.load(st + so + T0 * ND, mask=mask, other=0.0)
    n = tl.load(st + SZ + so + T0 * ND, mask=mask, other=0.0)
    m = tl.load(st + 3 * SZ + so + T0 * ND, mask=mask, other=0.0)
    g4 = tl.arange(0, 4)[:, None, None]
    bias4 = tl.load(bias + (hd * 4 + g4) * DH + u[None, None, :], mask=um[None, None, :], other=0.0)
    rbase = r + hd * DH * 4 * DH  # R[hd, e, g, u] = rbase[e * 4 DH + g DH + u]
    wa = None
    wb = None
    if RESIDENT:
        wa = _wblock(rbase, DH, 4 * DH, 1, 0, DH, u, um, KA)
        wb = _wblock(rbase, DH, 4 * DH, 1, KA, DH, u, um, KB)
    for t in range(T0, T1):
        acc = tl.load(wx + go + t * 4 * ND, mask=mask[None], other=0.0).to(tl.float32) + bias4
        hrow = ((bidx * (S + 1) + t) * NH + hd) * DH
        acc = _rows(acc, hx, hrow[None, :, None], bm[None, :, None], wa, wb, rbase, DH, 4 * DH, 1, DH, u, um, KA, KB,
                    BK, RESIDENT, PREC)
        ri, rf, rz, ro = _split4(acc)
        logf = tl.minimum(rf, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(rf)))
        m_new = tl.where(n == 0.0, ri, tl.maximum(ri, logf + m))
        ig = tl.minimum(tl.exp(ri - m_new), 1.0)
        fg = tl.minimum(tl.exp(logf + m - m_new), 1.0)
        c = fg * c + ig * (2.0 * tl.sigmoid(2.0 * rz) - 1.0)
        n = fg * n + ig
        h = tl.sigmoid(ro) * c / n
        m = m_new
        s1 = so + (t + 1) * ND
        tl.store(hx + s1, _mark(h.to(hx.dtype.element_ty)), mask=mask)  # first: the group waits for it
        tl.store(st + 2 * SZ + s1, h, mask=mask)
        tl.store(raw + go + t * 4 * ND, acc, mask=mask[None])
        tl.store(st + s1, c, mask=mask)
        tl.store(st + SZ + s1, n, mask=mask)
        tl.store(st + 3 * SZ + s1, m, mask=mask)
        tl.store(y + ((bidx[:, None] * S + t) * NH + hd) * DH + u[None, :], h.to(y.dtype.element_ty), mask=mask)


@triton.jit
def _bw(dy, dfin, r, st, raw, draw, dcar, dinit, B, S, NH, DH, T_hi, T_lo, TAIL: tl.constexpr,
        BB: tl.constexpr, U: tl.constexpr, KA: tl.constexpr, KB: tl.constexpr, BK: tl.constexpr,
        RESIDENT: tl.constexpr, PREC: tl.constexpr):
    """Back through steps T_hi - 1 down to T_lo. draw (zeroed, the kernel's type) is the exchange buffer.
    dfin/dinit: (3, B, NH, DH) gradients of (c, n, h) after the last / before the first step; dcar: (2, B, NH,
    DH) the (dc, dn) carried between launches. With TAIL, the gradient of the initial h is formed at the end
    (needs all gate gradients of step 0)."""
    hd, bidx, bm, u, um, mask, so, go = _tile(B, S, NH, DH, BB, U)
    SZ = tl.cast(B, tl.int64) * (S + 1) * NH * DH
    FZ = tl.cast(B, tl.int64) * NH * DH
    ND = NH * DH
    fo = (bidx[:, None] * NH + hd) * DH + u[None, :]
    dc = tl.load(dcar + fo, mask=mask, other=0.0)
    dn = tl.load(dcar + FZ + fo, mask=mask, other=0.0)
    g4 = tl.arange(0, 4)[:, None, None]
    rbase = r + hd * DH * 4 * DH  # R^T[e, u] of gate g = R[hd, u, g, e] = rbase[u * 4 DH + g DH + e]
    va = None
    vb = None
    if RESIDENT:
        va = _wblock(rbase, DH, 1, 4 * DH, 0, DH, u, um, KA)
        vb = _wblock(rbase, DH, 1, 4 * DH, KA, DH, u, um, KB)
    zero = tl.zeros((4, BB, U), tl.float32)
    grow = ((bidx[None, :, None] * S * 4 + g4) * NH + hd) * DH  # gate rows of step 0
    gm = bm[None, :, None]
    for it in range(T_hi - T_lo):
        t = T_hi - 1 - it
        dyv = tl.load(dy + ((bidx[:, None] * S + t) * NH + hd) * DH + u[None, :], mask=mask, other=0.0)
        ri, rf, rz, ro = _split4(tl.load(raw + go + t * 4 * ND, mask=mask[None], other=0.0))
        s1 = so + (t + 1) * ND
        c = tl.load(st + s1, mask=mask, other=0.0)
        n = tl.load(st + SZ + s1, mask=mask, other=1.0)
        m = tl.load(st + 3 * SZ + s1, mask=mask, other=0.0)
        c_prev = tl.load(st + s1 - ND, mask=mask, other=0.0)
        n_prev = tl.load(st + SZ + s1 - ND, mask=mask, other=0.0)
        m_prev = tl.load(st + 3 * SZ + s1 - ND, mask=mask, other=0.0)
        if t + 1 >= S:
            dh = tl.load(dfin + 2 * FZ + fo, mask=mask, other=0.0)
        else:  # from the gate gradients of step t + 1, written by the whole group
            dh = _sum4(_rows(zero, draw, grow + (t + 1) * 4 * ND, gm, va, vb, rbase, DH, 1, 4 * DH, DH, u, um, KA,
                             KB, BK, RESIDENT, PREC))
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
        dg = _join4(d_i, d_f, d_z, d_o).to(draw.dtype.element_ty)
        tl.store(draw + go + t * 4 * ND, _mark(dg), mask=mask[None])
        dc = dc * fg
        dn = dn * fg
    tl.store(dcar + fo, dc, mask=mask)
    tl.store(dcar + FZ + fo, dn, mask=mask)
    if TAIL:
        tl.store(dinit + fo, dc, mask=mask)
        tl.store(dinit + FZ + fo, dn, mask=mask)
        if S == 0:
            dh = tl.load(dfin + 2 * FZ + fo, mask=mask, other=0.0)
        else:
            dh = _sum4(_rows(zero, draw, grow, gm, va, vb, rbase, DH, 1, 4 * DH, DH, u, um, KA, KB, BK, RESIDENT,
                             PREC))
        tl.store(dinit + 2 * FZ + fo, dh, mask=mask)


BB = 16  # batch rows per program: the smallest tensor-core tile
BK = 32  # input units per block when the recurrent kernel is streamed
RESIDENT_BYTES = 64 * 1024  # largest slice of R kept resident in one program
_FORCE: dict | None = None  # tests: override the plan (U, stepwise, resident)
_TUNE = {"fw_warps": 4, "bw_warps": 4}
_SMS: dict = {}


def _plan(B, NH, DH, dtype, device) -> dict:
    """Units per program U (a power of two >= 16), group size SPLIT = ceil(DH / U), the blocks of input units
    KA, KB of the resident kernel, and whether it is resident."""
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
    KA = max(16, DHP // 2)  # the resident kernel in two blocks of input units: no padding at DH = 3 * 2**k
    KB = max(16, triton.next_power_of_2(max(DH - KA, 1)))
    plan = {"U": U, "stepwise": False, "resident": None}
    plan.update(_FORCE or {})
    split = triton.cdiv(DH, plan["U"])
    if plan["resident"] is None:
        plan["resident"] = (KA + KB) * plan["U"] * 4 * torch.tensor([], dtype=dtype).element_size() <= RESIDENT_BYTES
    assert not (split > 1 and not plan["stepwise"] and interpreting()), "the interpreter runs programs in turn"
    plan.update(KA=KA, KB=KB, SPLIT=split, grid=(nbb, NH, split))
    return plan


def _mark_in_place(x: torch.Tensor) -> None:
    """In place, what the kernels' _mark does: +0.0 becomes -0.0."""
    bits = x.view({2: torch.int16, 4: torch.int32}[x.element_size()])
    bits.masked_fill_(bits == 0, torch.iinfo(bits.dtype).min)


class _SLSTMFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, wx, r, b, c0, n0, h0, m0):
        B, S, _, NH, DH = wx.shape
        dtype = kernel_dtype(wx)
        st = torch.empty(4, B, S + 1, NH, DH, device=wx.device, dtype=torch.float32)
        for slot, init in enumerate((c0, n0, h0, m0)):
            st[slot, :, 0] = 0.0 if init is None else init
        hx = torch.zeros(B, S + 1, NH, DH, device=wx.device, dtype=dtype)
        hx[:, 0] = st[2, :, 0]
        _mark_in_place(hx[:, 0])  # the incoming h is read like an exchanged one
        raw = torch.empty(B, S, 4, NH, DH, device=wx.device, dtype=torch.float32)
        y = torch.empty(B, S, NH, DH, device=wx.device, dtype=wx.dtype)
        rk = r.to(dtype).contiguous()
        p = _plan(B, NH, DH, dtype, wx.device)
        args = (wx.contiguous(), rk, b.float().contiguous(), st, hx, raw, y, B, S, NH, DH)
        meta = dict(BB=BB, U=p["U"], KA=p["KA"], KB=p["KB"], BK=BK, RESIDENT=p["resident"],
                    PREC=dot_precision(dtype), num_warps=_TUNE["fw_warps"])
        for t0, t1 in ([(t, t + 1) for t in range(S)] if p["stepwise"] else [(0, S)]):
            _fw[p["grid"]](*args, t0, t1, **meta)
        ctx.save_for_backward(rk, st, hx, raw, c0, n0, m0)
        ctx.meta = (wx.dtype, r.dtype, b.dtype, p)
        last = st[:, :, S]
        return y, last[0], last[1], last[2], last[3]

    @staticmethod
    def backward(ctx, dy, dc, dn, dh, _dm):
        rk, st, hx, raw, c0, n0, m0 = ctx.saved_tensors
        wx_dtype, r_dtype, b_dtype, p = ctx.meta
        B, S1, NH, DH = st.shape[1:]
        S = S1 - 1
        dev = st.device
        dfin = torch.stack([torch.zeros(B, NH, DH, device=dev) if x is None else x.float()
                            for x in (dc, dn, dh)]).contiguous()
        dy = torch.zeros(B, S, NH, DH, device=dev) if dy is None else dy.contiguous()
        draw = torch.zeros_like(raw, dtype=rk.dtype)
        dinit = torch.empty_like(dfin)
        dcar = dfin[:2].clone()
        args = (dy, dfin, rk, st, raw, draw, dcar, dinit, B, S, NH, DH)
        meta = dict(BB=BB, U=p["U"], KA=p["KA"], KB=p["KB"], BK=BK, RESIDENT=p["resident"],
                    PREC=dot_precision(rk.dtype), num_warps=_TUNE["bw_warps"])
        if p["stepwise"]:
            for t in range(S - 1, -1, -1):
                _bw[p["grid"]](*args, t + 1, t, TAIL=False, **meta)
            _bw[p["grid"]](*args, 0, 0, TAIL=True, **meta)
        else:
            _bw[p["grid"]](*args, S, 0, TAIL=True, **meta)
        # dr[h] = sum over (b, s) of h_{s-1}[h] (x) the gate gradients of head h at s: one GEMM over all pairs of
        # heads (NH times the FLOPs) reads draw in place, where a per-head product needs a permuted copy of it.
        full = hx[:, :S].reshape(B * S, NH * DH).t() @ draw.view(B * S, 4 * NH * DH)
        dr = full.view(NH, DH, 4, NH, DH).diagonal(dim1=0, dim2=3).permute(3, 0, 1, 2).to(r_dtype).contiguous()
        db = draw.sum((0, 1), dtype=torch.float32).transpose(0, 1).to(b_dtype)
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
