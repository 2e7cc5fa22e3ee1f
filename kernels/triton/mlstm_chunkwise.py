"""mLSTM chunkwise forward and backward in Triton (training and prefill).

Design (our own, after reading what TFLA's two-level tiling does): the sequence is cut into chunks of
`chunk_size` (L) for the state recurrence, and every chunk is cut again into tiles of T <= 64 rows for
the quadratic intra-chunk part, so a large L (few stored states) costs no larger matrices.

* The scalar gate work is O(S) and done in PyTorch: b = cumsum(logsigmoid f) inside each chunk; the
  stabiliser of every position is known before any matrix work, m_t = b_t + max(m_chunk, cummax_s(i_s - b_s)),
  so no online rescaling is needed: the weight of key s for query t is exp(qg_t + kg_s) with
  qg = b - m, kg = i - b. With strong gates b reaches hundreds inside a chunk while the exponents that
  count are small differences, so kg is carried in two float32 words (see _Plan): one word made h 2% off
  in float32 at L=256 (issue 12), two put the kernel at the float32 floor.
* `_fw_states` runs the chunk recurrence (one program per state block) and stores the state before each
  chunk; `_fw_out` computes each output tile from that state plus the causal tiles of its chunk.
* Backward: `_bw_states` runs the transposed recurrence for the state gradients; `_bw_dq`, `_bw_dk`,
  `_bw_dv` each own one output, so nothing is accumulated atomically. The stabiliser m is a constant for
  the gradient (h does not depend on it up to eps); the gate gradients then follow from the unrolled form:
  di_s = k_s.dk_s and d(cumsum logf)_t = q_t.dq_t - k_t.dk_t, a reverse cumsum away from df.

Any S (padded internally to a multiple of L with gates that leave the state untouched), chunk sizes that
are powers of two in 16..256, head dims up to 512, float32/bfloat16/float16 inputs with float32
accumulation, initial states in and final states out with gradients through c, n and m_initial.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._common import check_device, dot_precision, feature_block, kernel_dtype

__all__ = ["mlstm_chunkwise"]


# ---------------------------------------------------------------------------------------------------------
# tile helpers


@triton.jit
def _rows_dot(a, b, ra, rb, D, TA: tl.constexpr, TB: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
    """(TA x TB) = a[ra, :D] @ b[rb, :D]^T for row-major (., D) matrices, float32 accumulation."""
    acc = tl.zeros((TA, TB), tl.float32)
    for d0 in range(0, D, BD):
        d = d0 + tl.arange(0, BD)
        md = d < D
        x = tl.load(a + ra[:, None] * D + d[None, :], mask=md[None, :], other=0.0)
        y = tl.load(b + rb[None, :] * D + d[:, None], mask=md[:, None], other=0.0)
        acc += tl.dot(x, y, input_precision=PREC)
    return acc


@triton.jit
def _causal_weight(qg, kg, kl, t, s):
    """exp(log D_ts - m_t) for key s <= query t in one chunk, 0 elsewhere. qg + kg cancels to the exponent
    (exactly, for the weights that count) and kl adds the low word of kg (see _Plan)."""
    return tl.exp(tl.where(s[None, :] <= t[:, None], (qg[:, None] + kg[None, :]) + kl[None, :], float("-inf")))


# ---------------------------------------------------------------------------------------------------------
# forward


@triton.jit
def _fw_states(k, v, kg, kl, g, gl, c0, n0, m0, cst, nst, mst, cT, nT, mT, S, NC, DHQK, DHV,
               L: tl.constexpr, T: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, HAS_C0: tl.constexpr, PREC: tl.constexpr):
    """Chunk recurrence for one (DHQK block, DHV block, head): stores the state before every chunk."""
    pk, pv, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    dk = pk * BK + tl.arange(0, BK)
    dv = pv * BV + tl.arange(0, BV)
    mk, mv = dk < DHQK, dv < DHV
    cmask = mk[:, None] & mv[None, :]
    coff = dk[:, None] * DHV + dv[None, :]
    if HAS_C0:
        c = tl.load(c0 + bh * DHQK * DHV + coff, mask=cmask, other=0.0)
        n = tl.load(n0 + bh * DHQK + dk, mask=mk, other=0.0)
    else:
        c = tl.zeros((BK, BV), tl.float32)
        n = tl.zeros((BK,), tl.float32)
    m = tl.load(m0 + bh)
    k += bh * S * DHQK
    v += bh * S * DHV
    for ci in range(NC):
        base = (bh * NC + ci).to(tl.int64)
        tl.store(cst + base * DHQK * DHV + coff, c.to(cst.dtype.element_ty), mask=cmask)
        if pv == 0:
            tl.store(nst + base * DHQK + dk, n, mask=mk)
            if pk == 0:
                tl.store(mst + base, m)
        gc, glc = tl.load(g + base), tl.load(gl + base)
        m_new = tl.maximum(gc + m, gc + tl.max(tl.load(kg + bh * S + ci * L + tl.arange(0, L)), 0))
        decay = tl.exp((gc + m - m_new) + glc)
        c *= decay
        n *= decay
        for t0 in range(0, L, T):  # sub-tiles bound the shared memory of one pipeline stage
            t = ci * L + t0 + tl.arange(0, T)
            w = tl.exp((gc + tl.load(kg + bh * S + t) - m_new) + (glc + tl.load(kl + bh * S + t)))
            kt = tl.load(k + t[:, None] * DHQK + dk[None, :], mask=mk[None, :], other=0.0)
            vt = tl.load(v + t[:, None] * DHV + dv[None, :], mask=mv[None, :], other=0.0)
            kw = kt.to(tl.float32) * w[:, None]
            c += tl.dot(tl.trans(kw.to(vt.dtype)), vt, input_precision=PREC)
            n += tl.sum(kw, 0)
        m = m_new
    tl.store(cT + bh * DHQK * DHV + coff, c, mask=cmask)
    if pv == 0:
        tl.store(nT + bh * DHQK + dk, n, mask=mk)
        if pk == 0:
            tl.store(mT + bh, m)


@triton.jit
def _fw_out(q, k, v, qg, kg, kl, mt, cst, nst, mst, h, den, S, NC, DHQK, DHV, scale, eps,
            L: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """One (T x BV) output tile: the inter-chunk part from the stored state plus the causal intra-chunk tiles."""
    pt, pv, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = pt * T + tl.arange(0, T)
    ci = (pt * T) // L
    dv = pv * BV + tl.arange(0, BV)
    mv = dv < DHV
    q += bh * S * DHQK
    k += bh * S * DHQK
    v += bh * S * DHV
    base = (bh * NC + ci).to(tl.int64)
    qgt = tl.load(qg + bh * S + t)
    acc = tl.zeros((T, BV), tl.float32)
    dsum = tl.zeros((T,), tl.float32)
    for d0 in range(0, DHQK, BD):
        d = d0 + tl.arange(0, BD)
        md = d < DHQK
        qt = tl.load(q + t[:, None] * DHQK + d[None, :], mask=md[None, :], other=0.0)
        cb = tl.load(cst + base * DHQK * DHV + d[:, None] * DHV + dv[None, :], mask=md[:, None] & mv[None, :],
                     other=0.0)
        acc += tl.dot(qt.to(cb.dtype), cb, input_precision=PREC)
        nb = tl.load(nst + base * DHQK + d, mask=md, other=0.0)
        dsum += tl.sum(qt.to(tl.float32) * nb[None, :], 1)
    gamma = tl.exp(qgt + tl.load(mst + base))
    acc *= gamma[:, None]
    dsum *= gamma
    for s0 in range(ci * L, pt * T + T, T):
        s = s0 + tl.arange(0, T)
        p = _rows_dot(q, k, t, s, DHQK, T, T, BD, PREC) * _causal_weight(qgt, tl.load(kg + bh * S + s),
                                                                          tl.load(kl + bh * S + s), t, s)
        dsum += tl.sum(p, 1)
        vs = tl.load(v + s[:, None] * DHV + dv[None, :], mask=mv[None, :], other=0.0)
        acc += tl.dot(p.to(vs.dtype), vs, input_precision=PREC)
    acc *= scale
    dsum *= scale
    norm = tl.maximum(tl.abs(dsum), tl.exp(-tl.load(mt + bh * S + t))) + eps
    tl.store(h + bh * S * DHV + t[:, None] * DHV + dv[None, :], (acc / norm[:, None]).to(h.dtype.element_ty),
             mask=mv[None, :])
    if pv == 0:
        tl.store(den + bh * S + t, dsum)


# ---------------------------------------------------------------------------------------------------------
# backward


@triton.jit
def _bw_prep(h, dh, den, mt, rn, dden, S, DHV, eps, T: tl.constexpr, BV: tl.constexpr):
    """Per position: 1/normaliser and the gradient of the (signed) denominator, d den = -(dh.h)/N."""
    pt, bh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    t = pt * T + tl.arange(0, T)
    hdh = tl.zeros((T,), tl.float32)
    for v0 in range(0, DHV, BV):
        dv = v0 + tl.arange(0, BV)
        off = bh * S * DHV + t[:, None] * DHV + dv[None, :]
        mv = dv[None, :] < DHV
        hdh += tl.sum(tl.load(h + off, mask=mv, other=0.0).to(tl.float32)
                      * tl.load(dh + off, mask=mv, other=0.0).to(tl.float32), 1)
    dn = tl.load(den + bh * S + t)
    floor = tl.exp(-tl.load(mt + bh * S + t))
    norm = tl.maximum(tl.abs(dn), floor) + eps
    sign = tl.where(tl.abs(dn) > floor, tl.where(dn > 0, 1.0, -1.0), 0.0)
    tl.store(rn + bh * S + t, 1.0 / norm)
    tl.store(dden + bh * S + t, -hdh / norm * sign)


@triton.jit
def _bw_states(q, dh, cq, cn, dec, dcT, dnT, dcst, dnst, dc0, dn0, S, NC, DHQK, DHV,
               L: tl.constexpr, T: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, HAS_FINAL: tl.constexpr, PREC: tl.constexpr):
    """Reverse chunk recurrence of the state gradients; stores d(state after chunk) for every chunk."""
    pk, pv, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    dk = pk * BK + tl.arange(0, BK)
    dv = pv * BV + tl.arange(0, BV)
    mk, mv = dk < DHQK, dv < DHV
    cmask = mk[:, None] & mv[None, :]
    coff = dk[:, None] * DHV + dv[None, :]
    if HAS_FINAL:
        dc = tl.load(dcT + bh * DHQK * DHV + coff, mask=cmask, other=0.0)
        dn = tl.load(dnT + bh * DHQK + dk, mask=mk, other=0.0)
    else:
        dc = tl.zeros((BK, BV), tl.float32)
        dn = tl.zeros((BK,), tl.float32)
    q += bh * S * DHQK
    dh += bh * S * DHV
    for cc in range(NC):
        ci = NC - 1 - cc
        base = (bh * NC + ci).to(tl.int64)
        tl.store(dcst + base * DHQK * DHV + coff, dc.to(dcst.dtype.element_ty), mask=cmask)
        if pv == 0:
            tl.store(dnst + base * DHQK + dk, dn, mask=mk)
        decay = tl.load(dec + base)
        dc *= decay
        dn *= decay
        for t0 in range(0, L, T):
            t = ci * L + t0 + tl.arange(0, T)
            qt = tl.load(q + t[:, None] * DHQK + dk[None, :], mask=mk[None, :], other=0.0).to(tl.float32)
            dht = tl.load(dh + t[:, None] * DHV + dv[None, :], mask=mv[None, :], other=0.0)
            qw = qt * tl.load(cq + bh * S + t)[:, None]
            dc += tl.dot(tl.trans(qw.to(dht.dtype)), dht, input_precision=PREC)
            dn += tl.sum(qt * tl.load(cn + bh * S + t)[:, None], 0)
    tl.store(dc0 + bh * DHQK * DHV + coff, dc, mask=cmask)
    if pv == 0:
        tl.store(dn0 + bh * DHQK + dk, dn, mask=mk)


@triton.jit
def _bw_dq(q, k, v, dh, qg, kg, kl, rn, dden, cst, nst, mst, dq, qdq, S, NC, DHQK, DHV, scale,
           L: tl.constexpr, T: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
    """dq for one (T x BK) tile, plus its share of q.dq (for the forget-gate gradient)."""
    pt, pk, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = pt * T + tl.arange(0, T)
    ci = (pt * T) // L
    dk = pk * BK + tl.arange(0, BK)
    mk = dk < DHQK
    q += bh * S * DHQK
    k += bh * S * DHQK
    v += bh * S * DHV
    dh += bh * S * DHV
    base = (bh * NC + ci).to(tl.int64)
    qgt = tl.load(qg + bh * S + t)
    rnt = tl.load(rn + bh * S + t)
    ddt = tl.load(dden + bh * S + t)
    acc = tl.zeros((T, BK), tl.float32)
    for v0 in range(0, DHV, BD):
        dv = v0 + tl.arange(0, BD)
        mv = dv < DHV
        dht = tl.load(dh + t[:, None] * DHV + dv[None, :], mask=mv[None, :], other=0.0)
        cb = tl.load(cst + base * DHQK * DHV + dk[None, :] * DHV + dv[:, None], mask=mk[None, :] & mv[:, None],
                     other=0.0)
        acc += tl.dot(dht.to(cb.dtype), cb, input_precision=PREC)
    nb = tl.load(nst + base * DHQK + dk, mask=mk, other=0.0)
    gamma = tl.exp(qgt + tl.load(mst + base))
    acc = (acc * rnt[:, None] + ddt[:, None] * nb[None, :]) * gamma[:, None]
    qt = tl.load(q + t[:, None] * DHQK + dk[None, :], mask=mk[None, :], other=0.0)
    qdq_t = tl.sum(qt.to(tl.float32) * acc, 1)  # the inter-chunk share of q.dq
    for s0 in range(ci * L, pt * T + T, T):
        s = s0 + tl.arange(0, T)
        dp = _rows_dot(dh, v, t, s, DHV, T, T, BD, PREC) * rnt[:, None] + ddt[:, None]
        ds = dp * _causal_weight(qgt, tl.load(kg + bh * S + s), tl.load(kl + bh * S + s), t, s)
        ks = tl.load(k + s[:, None] * DHQK + dk[None, :], mask=mk[None, :], other=0.0)
        acc += tl.dot(ds.to(ks.dtype), ks, input_precision=PREC)
        # the intra-chunk share, sum_s ds_ts q_t.k_s, from float32 ds (not the 16-bit ds of the product)
        qdq_t += tl.sum(ds * tl.dot(qt, tl.trans(ks), input_precision=PREC), 1)
    acc *= scale
    tl.store(dq + bh * S * DHQK + t[:, None] * DHQK + dk[None, :], acc.to(dq.dtype.element_ty), mask=mk[None, :])
    tl.store(qdq + (pk * tl.num_programs(2) + bh) * S + t, qdq_t * scale)


@triton.jit
def _key_tile(ps, bh, S, NC, kg, kl, g, gl, mst_next, L: tl.constexpr, T: tl.constexpr):
    """A key tile's positions, chunk, chunk index, gate exponents (both words) and weight into the chunk-end
    state, exp(a_s - m_chunk)."""
    s = ps * T + tl.arange(0, T)
    ci = (ps * T) // L
    base = (bh * NC + ci).to(tl.int64)
    kgs, kls = tl.load(kg + bh * S + s), tl.load(kl + bh * S + s)
    ws = tl.exp((tl.load(g + base) + kgs - tl.load(mst_next + base)) + (tl.load(gl + base) + kls))
    return s, ci, base, kgs, kls, ws


@triton.jit
def _bw_dk(q, k, v, dh, qg, kg, kl, g, gl, rn, dden, dcst, dnst, mst_next, dk_out, kdk, S, NC, DHQK, DHV, scale,
           L: tl.constexpr, T: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
    """dk for one (T x BK) key tile: through the chunk-end state and through the later queries of its chunk."""
    ps, pk, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    s, ci, base, kgs, kls, ws = _key_tile(ps, bh, S, NC, kg, kl, g, gl, mst_next, L, T)
    dk = pk * BK + tl.arange(0, BK)
    mk = dk < DHQK
    q += bh * S * DHQK
    k += bh * S * DHQK
    v += bh * S * DHV
    dh += bh * S * DHV
    acc = tl.zeros((T, BK), tl.float32)
    for v0 in range(0, DHV, BD):
        dv = v0 + tl.arange(0, BD)
        mv = dv < DHV
        vs = tl.load(v + s[:, None] * DHV + dv[None, :], mask=mv[None, :], other=0.0)
        dcb = tl.load(dcst + base * DHQK * DHV + dk[None, :] * DHV + dv[:, None], mask=mk[None, :] & mv[:, None],
                      other=0.0)
        acc += tl.dot(vs.to(dcb.dtype), dcb, input_precision=PREC)
    acc = (acc + tl.load(dnst + base * DHQK + dk, mask=mk, other=0.0)[None, :]) * ws[:, None]
    ks = tl.load(k + s[:, None] * DHQK + dk[None, :], mask=mk[None, :], other=0.0)
    kdk_s = tl.sum(ks.to(tl.float32) * acc, 1)  # the share through the chunk-end state
    for t0 in range(ps * T, ci * L + L, T):
        t = t0 + tl.arange(0, T)
        dp = _rows_dot(dh, v, t, s, DHV, T, T, BD, PREC) * tl.load(rn + bh * S + t)[:, None] \
            + tl.load(dden + bh * S + t)[:, None]
        # float32 whatever type `scale` arrives in (torch.compile passes Python floats as fp64): kdk_s is loop-carried
        ds = (dp * _causal_weight(tl.load(qg + bh * S + t), kgs, kls, t, s) * scale).to(tl.float32)
        qt = tl.load(q + t[:, None] * DHQK + dk[None, :], mask=mk[None, :], other=0.0)
        acc += tl.dot(tl.trans(ds.to(qt.dtype)), qt, input_precision=PREC)
        kdk_s += tl.sum(ds * tl.dot(qt, tl.trans(ks), input_precision=PREC), 0)  # as in _bw_dq: float32 ds
    tl.store(dk_out + bh * S * DHQK + s[:, None] * DHQK + dk[None, :], acc.to(dk_out.dtype.element_ty),
             mask=mk[None, :])
    tl.store(kdk + (pk * tl.num_programs(2) + bh) * S + s, kdk_s)


@triton.jit
def _bw_dv(q, k, dh, qg, kg, kl, g, gl, rn, dcst, mst_next, dv_out, S, NC, DHQK, DHV, scale,
           L: tl.constexpr, T: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
    """dv for one (T x BV) value tile: through the chunk-end state and through the later queries of its chunk."""
    ps, pv, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    s, ci, base, kgs, kls, ws = _key_tile(ps, bh, S, NC, kg, kl, g, gl, mst_next, L, T)
    dv = pv * BV + tl.arange(0, BV)
    mv = dv < DHV
    q += bh * S * DHQK
    k += bh * S * DHQK
    dh += bh * S * DHV
    acc = tl.zeros((T, BV), tl.float32)
    for d0 in range(0, DHQK, BD):
        d = d0 + tl.arange(0, BD)
        md = d < DHQK
        ks = tl.load(k + s[:, None] * DHQK + d[None, :], mask=md[None, :], other=0.0)
        dcb = tl.load(dcst + base * DHQK * DHV + d[:, None] * DHV + dv[None, :], mask=md[:, None] & mv[None, :],
                      other=0.0)
        acc += tl.dot(ks.to(dcb.dtype), dcb, input_precision=PREC)
    acc *= ws[:, None]
    for t0 in range(ps * T, ci * L + L, T):
        t = t0 + tl.arange(0, T)
        p = _rows_dot(q, k, t, s, DHQK, T, T, BD, PREC) * _causal_weight(tl.load(qg + bh * S + t), kgs, kls,
                                                                          t, s)
        dnum = tl.load(dh + t[:, None] * DHV + dv[None, :], mask=mv[None, :], other=0.0).to(tl.float32) \
            * tl.load(rn + bh * S + t)[:, None]
        acc += tl.dot(tl.trans((p * scale).to(dh.dtype.element_ty)), dnum.to(dh.dtype.element_ty),
                      input_precision=PREC)
    tl.store(dv_out + bh * S * DHV + s[:, None] * DHV + dv[None, :], acc.to(dv_out.dtype.element_ty),
             mask=mv[None, :])


# ---------------------------------------------------------------------------------------------------------
# host side


class _Plan:
    """Shapes, block sizes and the O(S) gate quantities shared by forward and backward."""

    def __init__(self, q, v, i, f, chunk_size):
        B, NH, S, DHQK = q.shape
        self.B, self.NH, self.S, self.DHQK, self.DHV = B, NH, S, DHQK, v.shape[-1]
        if chunk_size & (chunk_size - 1) or not 16 <= chunk_size <= 256:
            raise ValueError(f"chunk_size must be a power of two in [16, 256], got {chunk_size}")
        self.L = min(chunk_size, max(16, triton.next_power_of_2(S)))
        self.T = min(self.L, 64)
        self.NC = triton.cdiv(S, self.L)
        self.Sp = self.NC * self.L
        if self.Sp * max(DHQK, self.DHV) >= 2**31:  # offsets inside one head are 32-bit (the heads' are 64-bit)
            raise ValueError(f"mlstm_chunkwise: {S} positions x head dim {max(DHQK, self.DHV)} pass 2**31 values in "
                             "one head; run the sequence in pieces, carrying the state")
        self.BH = B * NH
        self.dtype = kernel_dtype(q)
        self.prec = dot_precision(self.dtype)
        self.scale = DHQK ** -0.5
        self.BK = feature_block(DHQK, 64)  # state blocks: acc BK x BV in registers
        self.BVS = feature_block(self.DHV, 128)
        self.BD = feature_block(max(DHQK, self.DHV), 64)  # contraction block of the tile products
        self.BV = feature_block(self.DHV, 128 if self.DHV <= 384 else 256)  # output tile width
        self.BKG = feature_block(DHQK, 128 if DHQK <= 384 else 256)  # dq / dk tile width
        # Gate quantities, padded with (i = -inf, logsigmoid f = 0): padding changes no state. The decay b from
        # the chunk start grows to hundreds with strong gates, and the exponent of a weight that counts is the
        # small difference kg_s - M_t of two such numbers: one float32 word for kg_s = i_s - b_s would be off
        # by ulp(|b|) there (2% of h at L=256), so kg (and the chunk decay g) carry a second, low word
        # (float64 arithmetic here, O(S)); the query side qg = -M_t is exact and common to its row.
        pad = self.Sp - S
        logf = F.pad(F.logsigmoid(f.double()).reshape(self.BH, S), (0, pad), value=0.0)
        ig = F.pad(i.double().reshape(self.BH, S), (0, pad), value=float("-inf"))
        b = logf.view(self.BH, self.NC, self.L).cumsum(-1)
        self.b = b.float()
        self.g, self.gl = _two_words(b[..., -1])
        self.kg, self.kl = _two_words(ig.view_as(b) - b)

    def pad(self, x):
        """(B, NH, S, D) -> contiguous (B*NH, Sp, D) in the kernel dtype."""
        x = x.to(self.dtype).reshape(self.BH, self.S, x.shape[-1])
        if self.Sp != self.S:
            x = F.pad(x, (0, 0, 0, self.Sp - self.S))
        return x.contiguous()

    def stabiliser(self, mst):
        """m_t of every position from the chunk-start m, b_t + M_t with M_t = max(m_chunk, cummax_{s<=t} kg_s),
        and qg_t = b_t - m_t = -M_t."""
        M = torch.maximum(mst[..., None], self.kg.cummax(-1).values)
        return (self.b + M).contiguous(), (-M).contiguous()


def _two_words(x):
    """float64 x as float32 hi + lo (lo = 0 where x is infinite)."""
    hi = x.float()
    return hi.contiguous(), (x - hi).float().nan_to_num_(0.0).contiguous()


def _launch_forward(p: _Plan, qp, kp, vp, c0, n0, m0, eps):
    dev = qp.device
    f32 = torch.float32
    cst = torch.empty(p.BH, p.NC, p.DHQK, p.DHV, device=dev, dtype=p.dtype)
    nst = torch.empty(p.BH, p.NC, p.DHQK, device=dev, dtype=f32)
    mst = torch.empty(p.BH, p.NC, device=dev, dtype=f32)
    cT = torch.empty(p.BH, p.DHQK, p.DHV, device=dev, dtype=f32)
    nT = torch.empty(p.BH, p.DHQK, device=dev, dtype=f32)
    mT = torch.empty(p.BH, device=dev, dtype=f32)
    m0 = torch.zeros(p.BH, device=dev, dtype=f32) if m0 is None else m0.reshape(p.BH).float().contiguous()
    has_c0 = c0 is not None
    c0 = c0.reshape(p.BH, p.DHQK, p.DHV).float().contiguous() if has_c0 else cT
    n0 = (torch.zeros(p.BH, p.DHQK, device=dev, dtype=f32) if n0 is None
          else n0.reshape(p.BH, p.DHQK).float().contiguous()) if has_c0 else nT
    grid = (triton.cdiv(p.DHQK, p.BK), triton.cdiv(p.DHV, p.BVS), p.BH)
    _fw_states[grid](kp, vp, p.kg, p.kl, p.g, p.gl, c0, n0, m0, cst, nst, mst, cT, nT, mT, p.Sp, p.NC, p.DHQK, p.DHV,
                     L=p.L, T=p.T, BK=p.BK, BV=p.BVS, HAS_C0=has_c0, PREC=p.prec, num_warps=4)
    mt, qg = p.stabiliser(mst)
    h = torch.empty(p.BH, p.Sp, p.DHV, device=dev, dtype=p.dtype)
    den = torch.empty(p.BH, p.Sp, device=dev, dtype=f32)
    grid = (p.Sp // p.T, triton.cdiv(p.DHV, p.BV), p.BH)
    _fw_out[grid](qp, kp, vp, qg, p.kg, p.kl, mt, cst, nst, mst, h, den, p.Sp, p.NC, p.DHQK, p.DHV, p.scale, eps,
                  L=p.L, T=p.T, BD=p.BD, BV=p.BV, PREC=p.prec, num_warps=8 if p.BV >= 256 else 4)
    return h, (cT, nT, mT), (cst, nst, mst, mt, qg, den)


class _ChunkwiseFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, i, f, c0, n0, m0, chunk_size, eps):
        p = _Plan(q, v, i, f, chunk_size)
        qp, kp, vp = p.pad(q), p.pad(k), p.pad(v)
        h, (cT, nT, mT), (cst, nst, mst, mt, qg, den) = _launch_forward(p, qp, kp, vp, c0, n0, m0, eps)
        ctx.save_for_backward(qp, kp, vp, f, h, cst, nst, mst, mt, qg, den, cT, nT, mT, c0, n0)
        ctx.plan, ctx.eps, ctx.in_dtypes = p, eps, (q.dtype, k.dtype, v.dtype, i.dtype, f.dtype)
        h = h[:, : p.S].reshape(p.B, p.NH, p.S, p.DHV).to(q.dtype)
        return (h, cT.view(p.B, p.NH, p.DHQK, p.DHV), nT.view(p.B, p.NH, p.DHQK), mT.view(p.B, p.NH, 1))

    @staticmethod
    def backward(ctx, dh, dcT, dnT, _dmT):
        qp, kp, vp, f, h, cst, nst, mst, mt, qg, den, cT, nT, mT, c0, n0 = ctx.saved_tensors
        p, eps = ctx.plan, ctx.eps
        dev, f32 = qp.device, torch.float32
        dhp = p.pad(dh if dh is not None else torch.zeros(p.B, p.NH, p.S, p.DHV, device=dev))
        has_final = dcT is not None or dnT is not None
        dcT = (torch.zeros_like(cT) if dcT is None else dcT.reshape_as(cT).float().contiguous())
        dnT = (torch.zeros_like(nT) if dnT is None else dnT.reshape_as(nT).float().contiguous())

        rn = torch.empty(p.BH, p.Sp, device=dev, dtype=f32)
        dden = torch.empty_like(rn)
        _bw_prep[(p.Sp // p.T, p.BH)](h, dhp, den, mt, rn, dden, p.Sp, p.DHV, eps, T=p.T, BV=p.BD)

        mnext = torch.cat([mst[:, 1:], mT[:, None]], 1).contiguous()  # m after each chunk
        gamma = torch.exp(qg + mst[..., None]).view(p.BH, p.Sp)  # weight of the chunk-start state per query
        cq = (gamma * rn * p.scale).contiguous()
        cn = (gamma * dden * p.scale).contiguous()
        dec = torch.exp((p.g + mst - mnext) + p.gl).contiguous()
        dcst = torch.empty_like(cst)
        dnst = torch.empty_like(nst)
        dc0 = torch.empty_like(cT)
        dn0 = torch.empty_like(nT)
        grid = (triton.cdiv(p.DHQK, p.BK), triton.cdiv(p.DHV, p.BVS), p.BH)
        _bw_states[grid](qp, dhp, cq, cn, dec, dcT, dnT, dcst, dnst, dc0, dn0, p.Sp, p.NC, p.DHQK, p.DHV,
                         L=p.L, T=p.T, BK=p.BK, BV=p.BVS, HAS_FINAL=has_final, PREC=p.prec, num_warps=4)

        nkb = triton.cdiv(p.DHQK, p.BKG)
        dq = torch.empty_like(qp)
        dk = torch.empty_like(kp)
        dv = torch.empty_like(vp)
        qdq = torch.empty(nkb, p.BH, p.Sp, device=dev, dtype=f32)
        kdk = torch.empty_like(qdq)
        warps = 8 if p.BKG >= 256 else 4
        grid = (p.Sp // p.T, nkb, p.BH)
        _bw_dq[grid](qp, kp, vp, dhp, qg, p.kg, p.kl, rn, dden, cst, nst, mst, dq, qdq, p.Sp, p.NC, p.DHQK, p.DHV,
                     p.scale, L=p.L, T=p.T, BK=p.BKG, BD=p.BD, PREC=p.prec, num_warps=warps)
        _bw_dk[grid](qp, kp, vp, dhp, qg, p.kg, p.kl, p.g, p.gl, rn, dden, dcst, dnst, mnext, dk, kdk, p.Sp, p.NC,
                     p.DHQK, p.DHV, p.scale, L=p.L, T=p.T, BK=p.BKG, BD=p.BD, PREC=p.prec, num_warps=warps)
        grid = (p.Sp // p.T, triton.cdiv(p.DHV, p.BV), p.BH)
        _bw_dv[grid](qp, kp, dhp, qg, p.kg, p.kl, p.g, p.gl, rn, dcst, mnext, dv, p.Sp, p.NC, p.DHQK, p.DHV, p.scale,
                     L=p.L, T=p.T, BV=p.BV, BD=p.BD, PREC=p.prec, num_warps=8 if p.BV >= 256 else 4)

        # Gate gradients from the unrolled form (see the module docstring).
        kdk = kdk.sum(0)
        dcum = qdq.sum(0) - kdk
        dcum[:, -1] += (dcT * cT).sum((-2, -1)) + (dnT * nT).sum(-1)
        dlogf = dcum.flip(-1).cumsum(-1).flip(-1)[:, : p.S]
        di = kdk[:, : p.S]
        df = dlogf * torch.sigmoid(-f.float().reshape(p.BH, p.S))

        def out(x, shape, dtype):
            return x[:, : p.S].reshape(shape).to(dtype)

        dq_, dk_ = (out(x, (p.B, p.NH, p.S, p.DHQK), dt) for x, dt in ((dq, ctx.in_dtypes[0]), (dk, ctx.in_dtypes[1])))
        dv_ = out(dv, (p.B, p.NH, p.S, p.DHV), ctx.in_dtypes[2])
        di_, df_ = (x.reshape(p.B, p.NH, p.S).to(dt) for x, dt in ((di, ctx.in_dtypes[3]), (df, ctx.in_dtypes[4])))
        # m_initial scales the initial state: its gradient is the one of log(c0, n0).
        dc0_ = dn0_ = dm0_ = None
        if c0 is not None:
            dc0_ = dc0.view(c0.shape).to(c0.dtype)
            dm0 = (dc0 * c0.reshape_as(dc0).float()).sum((-2, -1))
            if n0 is not None:
                dn0_ = dn0.view(n0.shape).to(n0.dtype)
                dm0 = dm0 + (dn0 * n0.reshape_as(dn0).float()).sum(-1)
            if ctx.needs_input_grad[7]:
                dm0_ = dm0.view(p.B, p.NH, 1)
        return dq_, dk_, dv_, di_, df_, dc0_, dn0_, dm0_, None, None


def mlstm_chunkwise(
    q, k, v, i, f, *, c_initial=None, n_initial=None, m_initial=None,
    return_last_states=False, chunk_size=64, eps=1e-6,
):
    """Chunkwise mLSTM (mlstm_kernels signature); h in q's dtype, final states (c, n, m) in float32."""
    check_device(q, k, v, i, f, c_initial, n_initial, m_initial)
    if n_initial is not None and c_initial is None:
        raise ValueError("n_initial needs c_initial")
    h, c, n, m = _ChunkwiseFn.apply(q, k, v, i, f, c_initial, n_initial, m_initial, chunk_size, eps)
    return (h, (c, n, m)) if return_last_states else h
