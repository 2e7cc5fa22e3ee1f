"""sLSTM forward and backward in Triton: the head-wise recurrent matmul fused with the gate math.

One program per (batch block, head) walks the whole sequence with its states in registers, so a step is
one matmul against the head's recurrent kernel plus the pointwise gates, with no launch per step and no
compile step at import (Triton compiles on first call, for the shapes seen). The forward keeps the raw
gates and the states of every step (float32) for the backward, which walks back once; the weight
gradients are then one batched matmul over all steps in PyTorch. The stabiliser m is a constant for the
gradient (y = o c / n does not depend on it).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from xlstm_zoo.kernels.triton._common import check_device, dot_precision, kernel_dtype

__all__ = ["slstm_sequence"]


@triton.jit
def _gates(raw, g: tl.constexpr, S, NH, DH, bidx, t, hd, j, mask):
    """Load gate g of step t for a (BB x DHP) block from a (B, S, 4, NH, DH) tensor."""
    off = ((bidx[:, None] * S + t) * 4 + g) * NH * DH + hd * DH + j[None, :]
    return tl.load(raw + off, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _slot(bidx, t, S, NH, hd, DH, j):
    """Offsets of step slot t in a (B, S + 1, NH, DH) state sequence."""
    return ((bidx[:, None] * (S + 1) + t) * NH + hd) * DH + j[None, :]


@triton.jit
def _rec(x, xrow, rmask, r, hd, DH, g: tl.constexpr, j, TRANS: tl.constexpr, PREC: tl.constexpr,
         BB: tl.constexpr, DHP: tl.constexpr, BC: tl.constexpr):
    """x[xrow, :DH] @ R[hd, :, g, :] (or R^T), x read back from memory in column blocks of BC, which bounds
    the shared memory of one product."""
    jm = j < DH
    base = r + hd * DH * 4 * DH + g * DH
    acc = tl.zeros((BB, DHP), tl.float32)
    for c0 in range(0, DH, BC):
        col = c0 + tl.arange(0, BC)
        cm = col < DH
        xb = tl.load(x + xrow[:, None] + col[None, :], mask=rmask[:, None] & cm[None, :], other=0.0)
        if TRANS:
            w = tl.load(base + j[None, :] * 4 * DH + col[:, None], mask=cm[:, None] & jm[None, :], other=0.0)
        else:
            w = tl.load(base + col[:, None] * 4 * DH + j[None, :], mask=cm[:, None] & jm[None, :], other=0.0)
        acc += tl.dot(xb.to(w.dtype), w, input_precision=PREC)
    return acc


@triton.jit
def _fw(wx, r, bias, st, raw, y, B, S, NH, DH, BB: tl.constexpr, DHP: tl.constexpr, BC: tl.constexpr,
        PREC: tl.constexpr):
    """st: (4, B, S + 1, NH, DH) float32 states (c, n, h, m), slot 0 holds the initial ones."""
    pb, hd = tl.program_id(0), tl.program_id(1)
    bidx = pb * BB + tl.arange(0, BB)
    j = tl.arange(0, DHP)
    mask = (bidx[:, None] < B) & (j[None, :] < DH)
    SZ = B * (S + 1) * NH * DH

    c = tl.load(st + _slot(bidx, 0, S, NH, hd, DH, j), mask=mask, other=0.0)
    n = tl.load(st + SZ + _slot(bidx, 0, S, NH, hd, DH, j), mask=mask, other=0.0)
    m = tl.load(st + 3 * SZ + _slot(bidx, 0, S, NH, hd, DH, j), mask=mask, other=0.0)
    bm = j < DH
    b_i = tl.load(bias + (hd * 4 + 0) * DH + j, mask=bm, other=0.0)[None, :]
    b_f = tl.load(bias + (hd * 4 + 1) * DH + j, mask=bm, other=0.0)[None, :]
    b_z = tl.load(bias + (hd * 4 + 2) * DH + j, mask=bm, other=0.0)[None, :]
    b_o = tl.load(bias + (hd * 4 + 3) * DH + j, mask=bm, other=0.0)[None, :]
    rmask = bidx < B
    for t in range(S):
        tl.debug_barrier()  # h of the previous step, stored by all threads, is read back below
        hx = st + 2 * SZ
        hrow = ((bidx * (S + 1) + t) * NH + hd) * DH
        ri = _gates(wx, 0, S, NH, DH, bidx, t, hd, j, mask) + b_i \
            + _rec(hx, hrow, rmask, r, hd, DH, 0, j, False, PREC, BB, DHP, BC)
        rf = _gates(wx, 1, S, NH, DH, bidx, t, hd, j, mask) + b_f \
            + _rec(hx, hrow, rmask, r, hd, DH, 1, j, False, PREC, BB, DHP, BC)
        rz = _gates(wx, 2, S, NH, DH, bidx, t, hd, j, mask) + b_z \
            + _rec(hx, hrow, rmask, r, hd, DH, 2, j, False, PREC, BB, DHP, BC)
        ro = _gates(wx, 3, S, NH, DH, bidx, t, hd, j, mask) + b_o \
            + _rec(hx, hrow, rmask, r, hd, DH, 3, j, False, PREC, BB, DHP, BC)
        logf = tl.minimum(rf, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(rf)))
        m_new = tl.where(n == 0.0, ri, tl.maximum(ri, logf + m))
        ig = tl.minimum(tl.exp(ri - m_new), 1.0)
        fg = tl.minimum(tl.exp(logf + m - m_new), 1.0)
        c = fg * c + ig * (2.0 * tl.sigmoid(2.0 * rz) - 1.0)
        n = fg * n + ig
        h = tl.sigmoid(ro) * c / n
        m = m_new
        gofs = ((bidx[:, None] * S + t) * 4) * NH * DH + hd * DH + j[None, :]
        tl.store(raw + gofs, ri, mask=mask)
        tl.store(raw + gofs + NH * DH, rf, mask=mask)
        tl.store(raw + gofs + 2 * NH * DH, rz, mask=mask)
        tl.store(raw + gofs + 3 * NH * DH, ro, mask=mask)
        tl.store(st + _slot(bidx, t + 1, S, NH, hd, DH, j), c, mask=mask)
        tl.store(st + SZ + _slot(bidx, t + 1, S, NH, hd, DH, j), n, mask=mask)
        tl.store(st + 2 * SZ + _slot(bidx, t + 1, S, NH, hd, DH, j), h, mask=mask)
        tl.store(st + 3 * SZ + _slot(bidx, t + 1, S, NH, hd, DH, j), m, mask=mask)
        tl.store(y + ((bidx[:, None] * S + t) * NH + hd) * DH + j[None, :], h.to(y.dtype.element_ty), mask=mask)


@triton.jit
def _bw(dy, dfin, r, st, raw, draw, dinit, B, S, NH, DH, BB: tl.constexpr, DHP: tl.constexpr, BC: tl.constexpr,
        PREC: tl.constexpr):
    """Back through time. dfin/dinit: (3, B, NH, DH) gradients of (c, n, h) after the last / before the first step."""
    pb, hd = tl.program_id(0), tl.program_id(1)
    bidx = pb * BB + tl.arange(0, BB)
    j = tl.arange(0, DHP)
    mask = (bidx[:, None] < B) & (j[None, :] < DH)
    SZ = B * (S + 1) * NH * DH
    FZ = B * NH * DH
    fofs = (bidx[:, None] * NH + hd) * DH + j[None, :]
    dc = tl.load(dfin + fofs, mask=mask, other=0.0)
    dn = tl.load(dfin + FZ + fofs, mask=mask, other=0.0)
    dh = tl.load(dfin + 2 * FZ + fofs, mask=mask, other=0.0)

    for tt in range(S):
        t = S - 1 - tt
        dh += tl.load(dy + ((bidx[:, None] * S + t) * NH + hd) * DH + j[None, :], mask=mask, other=0.0).to(tl.float32)
        ri = _gates(raw, 0, S, NH, DH, bidx, t, hd, j, mask)
        rf = _gates(raw, 1, S, NH, DH, bidx, t, hd, j, mask)
        rz = _gates(raw, 2, S, NH, DH, bidx, t, hd, j, mask)
        ro = _gates(raw, 3, S, NH, DH, bidx, t, hd, j, mask)
        c = tl.load(st + _slot(bidx, t + 1, S, NH, hd, DH, j), mask=mask, other=0.0)
        n = tl.load(st + SZ + _slot(bidx, t + 1, S, NH, hd, DH, j), mask=mask, other=1.0)
        m = tl.load(st + 3 * SZ + _slot(bidx, t + 1, S, NH, hd, DH, j), mask=mask, other=0.0)
        c_prev = tl.load(st + _slot(bidx, t, S, NH, hd, DH, j), mask=mask, other=0.0)
        n_prev = tl.load(st + SZ + _slot(bidx, t, S, NH, hd, DH, j), mask=mask, other=0.0)
        m_prev = tl.load(st + 3 * SZ + _slot(bidx, t, S, NH, hd, DH, j), mask=mask, other=0.0)
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
        gofs = ((bidx[:, None] * S + t) * 4) * NH * DH + hd * DH + j[None, :]
        tl.store(draw + gofs, d_i, mask=mask)
        tl.store(draw + gofs + NH * DH, d_f, mask=mask)
        tl.store(draw + gofs + 2 * NH * DH, d_z, mask=mask)
        tl.store(draw + gofs + 3 * NH * DH, d_o, mask=mask)
        tl.debug_barrier()  # the gate gradients just stored are read back by the products below
        grow = (bidx * S + t) * 4 * NH * DH + hd * DH
        rmask = bidx < B
        dh = _rec(draw, grow, rmask, r, hd, DH, 0, j, True, PREC, BB, DHP, BC) \
            + _rec(draw + NH * DH, grow, rmask, r, hd, DH, 1, j, True, PREC, BB, DHP, BC) \
            + _rec(draw + 2 * NH * DH, grow, rmask, r, hd, DH, 2, j, True, PREC, BB, DHP, BC) \
            + _rec(draw + 3 * NH * DH, grow, rmask, r, hd, DH, 3, j, True, PREC, BB, DHP, BC)
        dc = dc * fg
        dn = dn * fg
    tl.store(dinit + fofs, dc, mask=mask)
    tl.store(dinit + FZ + fofs, dn, mask=mask)
    tl.store(dinit + 2 * FZ + fofs, dh, mask=mask)


BB = 16  # batch rows per program: the smallest tensor-core tile
BC = 32  # input units per block of the recurrent product


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
        DHP = max(16, triton.next_power_of_2(DH))
        grid = (triton.cdiv(B, BB), NH)
        _fw[grid](wx.contiguous(), rk, b.float().contiguous(), st, raw, y, B, S, NH, DH, BB=BB, DHP=DHP, BC=BC,
                  PREC=dot_precision(dtype), num_warps=4 if DHP <= 128 else 8)
        ctx.save_for_backward(rk, st, raw, c0, n0, m0)
        ctx.meta = (wx.dtype, r.dtype, b.dtype, DHP)
        last = st[:, :, S]
        return y, last[0], last[1], last[2], last[3]

    @staticmethod
    def backward(ctx, dy, dc, dn, dh, _dm):
        rk, st, raw, c0, n0, m0 = ctx.saved_tensors
        wx_dtype, r_dtype, b_dtype, DHP = ctx.meta
        B, S1, NH, DH = st.shape[1:]
        S = S1 - 1
        dev = st.device
        dfin = torch.stack([torch.zeros(B, NH, DH, device=dev) if x is None else x.float()
                            for x in (dc, dn, dh)]).contiguous()
        dy = torch.zeros(B, S, NH, DH, device=dev) if dy is None else dy.contiguous()
        draw = torch.empty_like(raw)
        dinit = torch.empty_like(dfin)
        _bw[(triton.cdiv(B, BB), NH)](dy, dfin, rk, st, raw, draw, dinit, B, S, NH, DH, BB=BB, DHP=DHP, BC=BC,
                                      PREC=dot_precision(rk.dtype), num_warps=4 if DHP <= 128 else 8)
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
