"""Matrix-vector products with weight-only quantized weights, dequantized in registers (decode steps).

A B=1 decode step reads each weight once: int8 halves the bytes of bf16 and int4 quarters them, but only
if the product reads the packed weights directly. These kernels stream the packed rows once (through
shared memory, several tiles in flight: Triton's software pipeline, `num_stages`) and keep the few input
rows on chip, so no dequantized copy of a weight ever reaches device memory. Either may add a residual
(`y = residual + x W^T`, rounded once), which saves the decode step a launch per block.

Layouts (xlstm/quantized.py makes them):
- int8: q (N, K) int8, scale (N,): w[n, k] = q[n, k] * scale[n] (the kernel reads q's bytes as uint8).
- int4: q (N, Kp / 2) uint8 with K padded to Kp, a multiple of the group G; byte j of group g holds
  k = g G + j in its low nibble and k = g G + G/2 + j in its high one; scale and offset (Kp / G, N):
  w[n, k] = q[n, k] * scale[g, n] + offset[g, n].

How (measured on an H200: benchmarks/README.md, issue 12):
- int8, one row: CUDA cores, one float32 sum per lane, the weight tiles pipelined (55-87% of copy
  bandwidth; 2.63 ms per 7B token). Several rows: the tensor cores, each tile converted to the input's type
  (exact), since a program per row would read the weights once per row (L2 does not spare it).
- int4, one row: CUDA cores, the nibbles written into float32 mantissas by inline PTX (four bytes per
  register at once), one FMA to dequantize and one to accumulate (26-42% of bandwidth; 2.95 ms per token).
  Several rows: inline PTX writes each nibble into a 16-bit `BIAS + q` (two per register, as the tensor
  cores take them), the tensor cores multiply them with all rows, and the group's scale and offset are
  applied once per group to the product (~1.1x slower than the row kernel at one row). Both stay near
  ~3e12 weights/s: the per-weight instructions (5.9 and 3.9 in the sm_90 builds) bound them, not the bytes.
- Narrow products (4096 outputs: 32-64 programs for 132 multiprocessors) are split over the inputs
  (`_finish`), the split count autotuned per shape.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, interpreting

__all__ = ["MAX_ROWS", "int4_matvec", "int8_matvec"]

MAX_ROWS = 16
"""Input rows these kernels take (decode batches); longer inputs are matrix products, not theirs."""


def _configs(blocks: list[dict], warps=(4, 8), stages=(2, 3, 4), loop_stages: bool = True) -> list:
    """Weight tiles in flight. The one-row loops have no dot: Triton pipelines them only when their tl.range
    is told (STAGES); the tensor-core kernels' weights feed dots, which the launch's num_stages pipelines
    (telling int4's loop also pipelines the group scales: more instructions per weight)."""
    return [triton.Config({**b, "STAGES": s} if loop_stages else b, num_warps=w, num_stages=s)
            for b in blocks for w in warps for s in stages]


def _fitting(configs, named_args, **kwargs) -> list:
    """int8 tiles of at most 64 weights per thread: larger ones spill in sm_90 builds
    (benchmarks/weight_only_sass.py)."""
    fit = [c for c in configs if c.kwargs["BN"] * c.kwargs["BK"] <= 64 * 32 * c.num_warps]
    return fit or configs[:1]


@triton.jit
def _int8_kernel(x, q, scale, res, y, N, K, BN: tl.constexpr, BK: tl.constexpr, STAGES: tl.constexpr,
                 HAS_RES: tl.constexpr):
    """One input row (B=1 decode; batches take `_int8_rows_kernel`), BN outputs per program: one float32
    sum per lane, reduced once at the end."""
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    weights = q + n[:, None].to(tl.int64) * K
    acc = tl.zeros([BN, BK], dtype=tl.float32)
    k = tl.arange(0, BK)
    for k0 in tl.range(0, K, BK, num_stages=STAGES):
        kk = k0 + k
        u = tl.load(weights + kk[None, :], mask=mn[:, None] & (kk < K)[None, :], other=0)
        xv = tl.load(x + kk, mask=kk < K, other=0.0).to(tl.float32)
        # q as float32 without the slow conversion instruction: the byte u (q's two's complement) XOR 128
        # is q + 128, put into the mantissa of 2**23 (one LOP3 does both) and taken off by one subtraction
        acc += xv[None, :] * ((u.to(tl.int32) ^ 0x4B000080).to(tl.float32, bitcast=True) - 8388736.0)
    out = tl.sum(acc, 1) * tl.load(scale + n, mask=mn, other=0.0).to(tl.float32)
    if HAS_RES:
        out += tl.load(res + n, mask=mn, other=0.0).to(tl.float32)
    tl.store(y + n, out.to(y.dtype.element_ty), mask=mn)


_NIBBLES_ASM = tl.constexpr("""{
.reg .b32 t0, t1, t2, t3;
shl.b32 t0, $8, 12;
shl.b32 t1, $8, 4;
shr.b32 t2, $8, 4;
shr.b32 t3, $8, 12;
lop3.b32 $0, t0, 0x0000F000, 0x45000000, 0xEA;
lop3.b32 $1, t1, 0x0000F000, 0x45000000, 0xEA;
lop3.b32 $2, t2, 0x0000F000, 0x45000000, 0xEA;
lop3.b32 $3, t3, 0x0000F000, 0x45000000, 0xEA;
lop3.b32 $4, t0, 0x000F0000, 0x45000000, 0xEA;
lop3.b32 $5, t1, 0x000F0000, 0x45000000, 0xEA;
lop3.b32 $6, t2, 0x000F0000, 0x45000000, 0xEA;
lop3.b32 $7, t3, 0x000F0000, 0x45000000, 0xEA;
}""")
"""Byte i of the 32-bit register $8 shifted to bits 12-19, then (v & mask) | 0x45000000 in one LOP3 (lut
0xEA = a & b | c): the low nibble into $i, the high one into $(4 + i)."""


@triton.jit
def _nibbles_f32(p, ASM: tl.constexpr):
    """2048 + q (low nibble) and 2048 + 16 q (high nibble) of each byte of p, exact, in float32: the nibble
    written into the mantissa of 2048 at bit 12 / 16 (no conversion instruction). ASM: four bytes of a
    register at once, 12 instructions for 8 weights (what ptxas makes of the plain form costs ~3x that);
    the interpreter takes the plain form, which gives the same bits."""
    if ASM:
        lo, hi = tl.inline_asm_elementwise(_NIBBLES_ASM, "=r,=r,=r,=r,=r,=r,=r,=r,r", [p],
                                           dtype=(tl.int32, tl.int32), is_pure=True, pack=4)
    else:
        pi = p.to(tl.int32)
        lo, hi = ((pi & 15) << 12) | 0x45000000, ((pi & 240) << 12) | 0x45000000
    return lo.to(tl.float32, bitcast=True), hi.to(tl.float32, bitcast=True)


def _pairs_asm(magic: int) -> str:
    """Bytes b0..b3 of the 32-bit register $4 to BIAS + nibble in 16-bit pairs (MAGIC, BIAS's bit pattern, in
    both halves): PRMT puts b0 | b1 (and b2 | b3) into the low bytes of the halves, one LOP3 (lut 0xEA = a & b
    | c) writes the low nibbles into the mantissas, a shift and another LOP3 the high ones. 8 instructions for
    8 weights, already packed as the tensor cores take them."""
    m = f"0x{magic:04X}{magic:04X}"
    return ("{\n.reg .b32 t0, t1, t2, t3;\n"
            "prmt.b32 t0, $4, $4, 0x1100;\nprmt.b32 t1, $4, $4, 0x3322;\n"
            f"lop3.b32 $0, t0, 0x000F000F, {m}, 0xEA;\nlop3.b32 $1, t1, 0x000F000F, {m}, 0xEA;\n"
            "shr.b32 t2, t0, 4;\nshr.b32 t3, t1, 4;\n"
            f"lop3.b32 $2, t2, 0x000F000F, {m}, 0xEA;\nlop3.b32 $3, t3, 0x000F000F, {m}, 0xEA;\n}}")


_NIBBLE_BIAS = {torch.bfloat16: (128.0, 0x4300), torch.float16: (1024.0, 0x6400), torch.float32: (0.0, 0x4B000000)}
"""(BIAS, MAGIC) of `_biased_nibbles`: MAGIC is BIAS's bit pattern (float32: 2**23's, taken off again)."""
_BF16_PAIRS_ASM = tl.constexpr(_pairs_asm(_NIBBLE_BIAS[torch.bfloat16][1]))
_FP16_PAIRS_ASM = tl.constexpr(_pairs_asm(_NIBBLE_BIAS[torch.float16][1]))


@triton.jit
def _biased_nibbles(p, dt: tl.constexpr, MAGIC: tl.constexpr, ASM: tl.constexpr):
    """BIAS + the low and the high nibble of each byte of p, exact, in dt, made by writing the nibble into
    the mantissa of MAGIC (a number whose last mantissa bit is worth 1): no conversion instruction. BIAS and
    MAGIC per dtype: `_NIBBLE_BIAS` (float32 takes its 2**23 off again: it would cancel in the sums). ASM
    (16-bit dt on a GPU): four bytes at once (`_pairs_asm`); the plain form gives the same bits."""
    if dt == tl.float32:
        pi = p.to(tl.int32)
        lo = ((pi & 15) | MAGIC).to(tl.float32, bitcast=True) - 8388608.0
        hi = ((pi >> 4) | MAGIC).to(tl.float32, bitcast=True) - 8388608.0
    elif ASM and dt == tl.bfloat16:
        lo, hi = tl.inline_asm_elementwise(_BF16_PAIRS_ASM, "=r,=r,=r,=r,r", [p], dtype=(tl.bfloat16, tl.bfloat16),
                                           is_pure=True, pack=4)
    elif ASM:
        lo, hi = tl.inline_asm_elementwise(_FP16_PAIRS_ASM, "=r,=r,=r,=r,r", [p], dtype=(tl.float16, tl.float16),
                                           is_pure=True, pack=4)
    else:
        pi = p.to(tl.int16)
        lo = ((pi & 15) | MAGIC).to(dt, bitcast=True)
        hi = ((pi >> 4) | MAGIC).to(dt, bitcast=True)
    return lo, hi


@triton.jit
def _finish(acc, part, count, res, y, M, N, srm, sym, BN: tl.constexpr, SPLIT: tl.constexpr,
            HAS_RES: tl.constexpr):
    """Stores [residual +] acc (16 rows, outputs BN * program_id(0) on). SPLIT > 1: this program summed one
    of SPLIT slices of the inputs (narrow products otherwise leave multiprocessors idle): it writes its
    float32 sum to `part`, and the last of the block's programs to arrive (counted in `count`, which it
    resets) adds them in a fixed order, so the result does not depend on which one was last."""
    pid = tl.program_id(0)
    m, n = tl.arange(0, 16), pid * BN + tl.arange(0, BN)
    mask = (m < M)[:, None] & (n < N)[None, :]
    last = True
    if SPLIT > 1:
        tl.store(part + (tl.program_id(1) * 16 + m[:, None]) * N + n[None, :], acc, mask=mask)
        tl.debug_barrier()  # every thread's partial sum stored before the (releasing) count below
        last = tl.atomic_add(count + pid, 1) == SPLIT - 1
        if last:
            acc = tl.zeros([16, BN], dtype=tl.float32)
            for sp in tl.static_range(SPLIT):
                acc += tl.load(part + (sp * 16 + m[:, None]) * N + n[None, :], mask=mask, other=0.0,
                               cache_modifier=".cg")
            tl.store(count + pid, 0)
    if last:
        if HAS_RES:
            acc += tl.load(res + m[:, None] * srm + n[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(y + m[:, None] * sym + n[None, :], acc.to(y.dtype.element_ty), mask=mask)


@triton.jit
def _int8_rows_kernel(x, q, scale, res, y, part, count, M, N, K, sxm, srm, sym, BN: tl.constexpr,
                      BK: tl.constexpr, SPLIT: tl.constexpr, HAS_RES: tl.constexpr, F32_DOT: tl.constexpr):
    """All (<= 16) input rows per program, for batches (one program per row would read each weight once per
    row: L2 does not spare it, 5.7x the time at 8 rows on an H200): the tensor cores multiply the rows with
    each tile of weights, converted to x's dtype (exact: 8-bit integers fit its mantissa)."""
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    weights = q + n[:, None].to(tl.int64) * K
    k, m = tl.arange(0, BK), tl.arange(0, 16)
    mm = (m < M)[:, None]
    per_split = tl.cdiv(tl.cdiv(K, BK), SPLIT) * BK
    k_start = tl.program_id(1) * per_split
    k_end = tl.minimum(k_start + per_split, K)
    acc = tl.zeros([16, BN], dtype=tl.float32)
    for k0 in tl.range(k_start, k_end, BK):
        kk = k0 + k
        u = tl.load(weights + kk[None, :], mask=mn[:, None] & (kk < k_end)[None, :], other=0)
        xv = tl.load(x + m[:, None] * sxm + kk[None, :], mask=mm & (kk < k_end)[None, :], other=0.0)
        w = u.to(tl.int8, bitcast=True).to(tl.float32 if F32_DOT else xv.dtype)
        acc = tl.dot(xv.to(w.dtype), tl.trans(w), acc, input_precision="ieee")
    acc *= tl.load(scale + n, mask=mn, other=0.0).to(tl.float32)[None, :]
    _finish(acc, part, count, res, y, M, N, srm, sym, BN, SPLIT, HAS_RES)


@triton.jit
def _int4_kernel(x, q, scale, offset, res, y, part, count, M, N, K, NG, sxm, srm, sym, BN: tl.constexpr,
                 SPLIT: tl.constexpr, G: tl.constexpr, BIAS: tl.constexpr, MAGIC: tl.constexpr,
                 HAS_RES: tl.constexpr, F32_DOT: tl.constexpr, ASM: tl.constexpr):
    """All (<= 16) input rows per program, one group per loop step, the groups split over SPLIT programs
    (`_finish`). Per group: d = x . (BIAS + q) over the group's inputs (two tensor-core products: low and
    high nibbles), then y += s (d - BIAS X) + b X with X the group's input sum. F32_DOT: both operands in
    float32 (the interpreter's 16-bit dot is wrong)."""
    HALF: tl.constexpr = G // 2
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    weights = q + n[:, None].to(tl.int64) * (NG * HALF)
    j, m = tl.arange(0, HALF), tl.arange(0, 16)
    mm = (m < M)[:, None]
    per_split = tl.cdiv(NG, SPLIT)
    g_start = tl.program_id(1) * per_split
    g_end = tl.minimum(g_start + per_split, NG)
    acc = tl.zeros([16, BN], dtype=tl.float32)
    for g in tl.range(g_start, g_end):
        lo, hi = _biased_nibbles(tl.load(weights + g * HALF + j[None, :], mask=mn[:, None], other=0),
                                 x.dtype.element_ty, MAGIC, ASM)
        k = g * G + j
        xl = tl.load(x + m[:, None] * sxm + k[None, :], mask=mm & (k < K)[None, :], other=0.0)
        xh = tl.load(x + m[:, None] * sxm + (k + HALF)[None, :], mask=mm & (k + HALF < K)[None, :], other=0.0)
        if F32_DOT:
            lo, hi, xl, xh = lo.to(tl.float32), hi.to(tl.float32), xl.to(tl.float32), xh.to(tl.float32)
        d = tl.dot(xh, tl.trans(hi), tl.dot(xl, tl.trans(lo), input_precision="ieee"), input_precision="ieee")
        xs = tl.sum(xl.to(tl.float32) + xh.to(tl.float32), 1)[:, None]
        s = tl.load(scale + g * N + n, mask=mn, other=0.0).to(tl.float32)[None, :]
        b = tl.load(offset + g * N + n, mask=mn, other=0.0).to(tl.float32)[None, :]
        acc += s * (d - BIAS * xs) + b * xs
    _finish(acc, part, count, res, y, M, N, srm, sym, BN, SPLIT, HAS_RES)


@triton.jit
def _int4_row_kernel(x, q, scale, offset, res, y, part, count, N, K, NG, BN: tl.constexpr, GPI: tl.constexpr,
                     SPLIT: tl.constexpr, STAGES: tl.constexpr, G: tl.constexpr, HAS_RES: tl.constexpr,
                     ASM: tl.constexpr):
    """One input row (B=1 decode) on the CUDA cores, one float32 sum per lane: per weight 1.5 integer
    instructions (`_nibbles_f32`), one FMA to dequantize (the 2048 folded into the offset: w = v s' + b -
    2048 s') and one to accumulate: ~1.3x the tensor-core kernel for one row on an H200."""
    HALF: tl.constexpr = G // 2
    EXACT: tl.constexpr = x.dtype.element_ty == tl.float32  # float32 takes the 2048 off first (exact)
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    weights = q + n[:, None].to(tl.int64) * (NG * HALF)
    j = tl.arange(0, HALF)
    per_split = tl.cdiv(NG, SPLIT)
    g_start = tl.program_id(1) * per_split
    g_end = tl.minimum(g_start + per_split, NG)
    acc = tl.zeros([BN, HALF], dtype=tl.float32)
    for g0 in tl.range(g_start, g_end, GPI, num_stages=STAGES):
        for gi in tl.static_range(GPI):
            g = g0 + gi
            mg = mn & (g + 0 * n < g_end)
            vl, vh = _nibbles_f32(tl.load(weights + g * HALF + j[None, :], mask=mg[:, None], other=0), ASM)
            s = tl.load(scale + g * N + n, mask=mg, other=0.0).to(tl.float32)
            b = tl.load(offset + g * N + n, mask=mg, other=0.0).to(tl.float32)
            k = g * G + j
            xl = tl.load(x + k, mask=k < K, other=0.0).to(tl.float32)
            xh = tl.load(x + k + HALF, mask=k + HALF < K, other=0.0).to(tl.float32)
            if EXACT:
                vl, vh, cl, ch = vl - 2048.0, vh - 2048.0, b, b
            else:
                cl, ch = b - 2048.0 * s, b - 128.0 * s
            acc += xl[None, :] * (vl * s[:, None] + cl[:, None])
            acc += xh[None, :] * (vh * (s * 0.0625)[:, None] + ch[:, None])
    rows = tl.zeros([16, BN], dtype=tl.float32) + tl.sum(acc, 1)[None, :]  # `_finish` stores row 0 of 16
    _finish(rows, part, count, res, y, 1, N, 0, 0, BN, SPLIT, HAS_RES)


# On a GPU each weight shape is tuned once, on first use (before a decode graph is captured: the runner's
# warm-up steps run first); the interpreter takes one small block.
_INT8_TUNED = triton.autotune(_configs([dict(BN=bn, BK=bk) for bn in (16, 32) for bk in (256, 512)], warps=(4,),
                                       stages=(3, 4, 5)),
                              key=["N", "K"], prune_configs_by={"early_config_prune": _fitting})(_int8_kernel)
_SPLIT_PROGRAMS = 1024
"""Split products have at most this many programs (~8 per multiprocessor): more only adds partial sums."""
_INT4_BLOCKS = [dict(BN=bn, SPLIT=sp) for bn in (64, 128) for sp in (1, 2, 4, 8, 16)]
_INT8_ROWS_BLOCKS = [dict(BN=bn, BK=bk, SPLIT=sp) for bn in (64, 128) for bk in (64, 128) for sp in (1, 2, 4, 8)]
_INTERPRETER_SPLIT = 3
"""The interpreter's split of every product (tests set 1 to check the unsplit path)."""


def _split_fits(n: int, block: dict) -> bool:
    return block["SPLIT"] == 1 or triton.cdiv(n, block["BN"]) * block["SPLIT"] <= _SPLIT_PROGRAMS


def _split_fitting(configs, named_args, **kwargs) -> list:
    return [c for c in configs if _split_fits(named_args["N"], c.kwargs)]


_INT8_ROWS_TUNED = triton.autotune(_configs(_INT8_ROWS_BLOCKS, warps=(4,), stages=(3, 4), loop_stages=False),
                                   key=["N", "K"], prune_configs_by={"early_config_prune": _split_fitting}
                                   )(_int8_rows_kernel)
_INT4_TUNED = triton.autotune(_configs(_INT4_BLOCKS, warps=(4,), stages=(3,), loop_stages=False),
                              key=["M", "N", "K"], prune_configs_by={"early_config_prune": _split_fitting}
                              )(_int4_kernel)
_INT4_ROW_BLOCKS = [dict(BN=64, GPI=gpi, SPLIT=sp) for gpi in (1, 2) for sp in (1, 2, 4, 8)]
_INT4_ROW_TUNED = triton.autotune(_configs(_INT4_ROW_BLOCKS, warps=(4,), stages=(3, 4)), key=["N", "K"],
                                  prune_configs_by={"early_config_prune": _split_fitting})(_int4_row_kernel)
_WORKSPACES: dict = {}


def _prepare(x: torch.Tensor, n: int, residual):
    rows = x.reshape(-1, x.shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    M = rows.shape[0]
    if M > MAX_ROWS:
        raise ValueError(f"weight-only matvec: at most {MAX_ROWS} input rows, got {M}")
    y = torch.empty(M, n, device=x.device, dtype=x.dtype)
    if residual is None:
        return rows, y, (y, 0)
    res = residual.reshape(M, n)
    if res.stride(-1) != 1:
        res = res.contiguous()
    return rows, y, (res, res.stride(0))


def _split_workspace(device: torch.device, n: int):
    """The float32 partial sums and the arrival counts (zero between launches) of a split product with n
    outputs, kept per device and width: launches on one stream run one after another, so products of
    one width share them, also inside a captured graph (made on first use, before any capture)."""
    key = (device, n)
    if key not in _WORKSPACES:
        blocks = _INT4_BLOCKS + _INT4_ROW_BLOCKS + _INT8_ROWS_BLOCKS
        splits = max([b["SPLIT"] for b in blocks if _split_fits(n, b)] + [_INTERPRETER_SPLIT])
        _WORKSPACES[key] = (torch.empty(splits * MAX_ROWS, n, device=device, dtype=torch.float32),
                            torch.zeros(triton.cdiv(n, 16), device=device, dtype=torch.int32))
    return _WORKSPACES[key]


def _launch_split(kernel, tuned, n: int, args: tuple, interpreted: dict, **flags) -> None:
    """A product of the split kernels: on a GPU the config tuned for its shape, in the interpreter one small
    block (plus `interpreted`) split in _INTERPRETER_SPLIT."""
    if interpreting():
        kernel[(triton.cdiv(n, 16), _INTERPRETER_SPLIT)](*args, BN=16, SPLIT=_INTERPRETER_SPLIT, **interpreted,
                                                         **flags)
    else:
        tuned[lambda meta: (triton.cdiv(n, meta["BN"]), meta["SPLIT"])](*args, **flags)


def int8_matvec(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, residual=None) -> torch.Tensor:
    """[residual +] x (..., K) @ (q * scale[:, None]).T for q (N, K) int8: (..., N) in x's dtype. One row on
    the CUDA cores (`_int8_kernel`), several on the tensor cores (`_int8_rows_kernel`)."""
    check_device(x, q, scale, residual)
    N, K = q.shape
    rows, y, (res, srm) = _prepare(x, N, residual)
    M, u8 = rows.shape[0], q.view(torch.uint8)
    flags = dict(HAS_RES=residual is not None)
    if M == 1:
        args = (rows, u8, scale, res, y, N, K)
        if interpreting():
            _int8_kernel[(triton.cdiv(N, 16),)](*args, BN=16, BK=64, STAGES=1, **flags)
        else:
            _INT8_TUNED[lambda meta: (triton.cdiv(N, meta["BN"]),)](*args, **flags)
        return y.reshape(*x.shape[:-1], N)
    part, count = _split_workspace(x.device, N)
    args = (rows, u8, scale, res, y, part, count, M, N, K, rows.stride(0), srm, y.stride(0))
    _launch_split(_int8_rows_kernel, _INT8_ROWS_TUNED, N, args, dict(BK=32), F32_DOT=interpreting(), **flags)
    return y.reshape(*x.shape[:-1], N)


def int4_matvec(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor,
                residual=None) -> torch.Tensor:
    """[residual +] x (..., K) times the int4 weight (q, scale, offset) of the module docstring: (..., N) in
    x's dtype (bfloat16, float16 or float32)."""
    check_device(x, q, scale, offset, residual)
    (NG, N), K = scale.shape, x.shape[-1]
    G = 2 * q.shape[1] // NG
    if G % 32:
        raise ValueError(f"int4 matvec: groups of a multiple of 32 inputs (the tensor-core tiles), got {G}")
    rows, y, (res, srm) = _prepare(x, N, residual)
    part, count = _split_workspace(x.device, N)
    M, flags = rows.shape[0], dict(G=G, HAS_RES=residual is not None)
    if M == 1:
        args = (rows, q, scale, offset, res, y, part, count, N, K, NG)
        _launch_split(_int4_row_kernel, _INT4_ROW_TUNED, N, args, dict(GPI=2, STAGES=1), ASM=not interpreting(),
                      **flags)
        return y.reshape(*x.shape[:-1], N)
    args = (rows, q, scale, offset, res, y, part, count, M, N, K, NG, rows.stride(0), srm, y.stride(0))
    bias, magic = _NIBBLE_BIAS[x.dtype]
    flags.update(BIAS=bias, MAGIC=magic, F32_DOT=interpreting(), ASM=not interpreting())
    _launch_split(_int4_kernel, _INT4_TUNED, N, args, {}, **flags)
    return y.reshape(*x.shape[:-1], N)
