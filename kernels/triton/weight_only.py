"""Matrix-vector products with weight-only quantized weights, dequantized in registers (decode steps).

A B=1 decode step reads each weight once: int8 halves the bytes of bf16 and int4 quarters them, but only
if the product reads the packed weights directly. These kernels stream the packed rows once and keep the
few input rows in registers, so no dequantized copy of a weight ever reaches device memory.

Layouts (xlstm/quantized.py makes them):
- int8: q (N, K) int8, scale (N,): w[n, k] = q[n, k] * scale[n] (the kernel reads q's bytes as uint8).
- int4: q (N, Kp / 2) uint8 with K padded to Kp, a multiple of the group G; byte j of group g holds
  k = g G + j in its low nibble and k = g G + G/2 + j in its high one; scale and offset (Kp / G, N):
  w[n, k] = q[n, k] * scale[g, n] + offset[g, n], formed in registers only.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, interpreting

__all__ = ["MAX_ROWS", "int4_matvec", "int8_matvec"]

MAX_ROWS = 16
"""Input rows these kernels take (decode batches); longer inputs are matrix products, not theirs."""


def _configs(blocks: list[dict], warps=(4, 8), stages=(3,)) -> list:
    return [triton.Config(b, num_warps=w, num_stages=s) for b in blocks for w in warps for s in stages]


def _fitting(configs, named_args, **kwargs) -> list:
    """Tiles of at most 128 accumulators per thread (BM x BN x BK): larger ones take 250+ registers or
    spill in sm_90 builds; none of the admitted configs spills (benchmarks/weight_only_sass.py)."""
    bm = kwargs.get("BM", named_args.get("BM", 1))
    bk = kwargs.get("BK", named_args.get("BK"))
    fit = [c for c in configs if bm * c.kwargs["BN"] * c.kwargs.get("BK", bk) <= 128 * 32 * c.num_warps]
    return fit or configs[:1]


@triton.jit
def _rows(x, m, k, mk, sxm):
    """Input rows m (clamped to existing rows: a mask on m would keep the loads from being vectorised) at
    columns k, float32 (BM, BK)."""
    return tl.load(x + m[:, None] * sxm + k[None, :], mask=mk[None, :], other=0.0).to(tl.float32)


@triton.jit
def _small_int_to_float(u, bias: tl.constexpr):
    """u - bias in float32 for integers 0 <= u < 2**23 (int32) without the slow conversion instruction:
    u goes into the mantissa of 2**23, which one subtraction takes off with the bias (at HBM speed an int4
    matvec needs ~10**13 conversions per second, more than the conversion unit gives)."""
    return (u | 0x4B000000).to(tl.float32, bitcast=True) - (8388608.0 + bias)


@triton.jit
def _int8_kernel(x, q, scale, y, M, N, K, sxm, sym, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    m = tl.program_id(1) * BM + tl.arange(0, BM)
    mn, mm, mx = n < N, m < M, tl.minimum(m, M - 1)
    rows = q + n[:, None].to(tl.int64) * K
    acc = tl.zeros([BM, BN, BK], dtype=tl.float32)  # one sum per thread and lane: reduced once, at the end
    for k0 in range(0, K, BK):
        k = k0 + tl.arange(0, BK)
        mk = k < K
        u = tl.load(rows + k[None, :], mask=mn[:, None] & mk[None, :], other=0).to(tl.int32)
        w = _small_int_to_float(u ^ 128, 128.0)  # u: the int8 bits as uint8; u ^ 128 = q + 128
        acc += _rows(x, mx, k, mk, sxm)[:, None, :] * w[None, :, :]
    out = tl.sum(acc, 2) * tl.load(scale + n, mask=mn, other=0.0).to(tl.float32)[None, :]
    tl.store(y + m[:, None] * sym + n[None, :], out.to(y.dtype.element_ty), mask=mm[:, None] & mn[None, :])


@triton.jit
def _int4_kernel(x, q, scale, offset, y, M, N, K, NG, sxm, sym, BM: tl.constexpr, BN: tl.constexpr,
                 BK: tl.constexpr):
    """BK is the group size G: one group of every row per iteration, dequantized by one multiply-add
    (q * scale + offset) per weight and accumulated per lane; reduced once, at the end."""
    HALF: tl.constexpr = BK // 2
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    m = tl.program_id(1) * BM + tl.arange(0, BM)
    mn, mm, mx = n < N, m < M, tl.minimum(m, M - 1)
    j = tl.arange(0, HALF)
    rows = q + n[:, None].to(tl.int64) * (NG * HALF)
    acc = tl.zeros([BM, BN, HALF], dtype=tl.float32)
    for g in range(0, NG):
        packed = tl.load(rows + (g * HALF + j)[None, :], mask=mn[:, None], other=0).to(tl.int32)
        s = tl.load(scale + g * N + n, mask=mn, other=0.0).to(tl.float32)[:, None]
        b = tl.load(offset + g * N + n, mask=mn, other=0.0).to(tl.float32)[:, None]
        lo = _small_int_to_float(packed & 15, 0.0) * s + b
        hi = _small_int_to_float(packed & 240, 0.0) * (s * 0.0625) + b  # the high nibble, times 16
        k = g * BK + j
        xl, xh = _rows(x, mx, k, k < K, sxm), _rows(x, mx, k + HALF, k + HALF < K, sxm)
        acc += xl[:, None, :] * lo[None, :, :] + xh[:, None, :] * hi[None, :, :]
    tl.store(y + m[:, None] * sym + n[None, :], tl.sum(acc, 2).to(y.dtype.element_ty), mask=mm[:, None] & mn[None, :])


# On a GPU each weight shape is tuned once, on first use (before a decode graph is captured: the runner's
# warm-up steps run first); the interpreter takes one small block.
_INT8_TUNED = triton.autotune(_configs([dict(BN=bn, BK=bk) for bn, bk in ((8, 512), (16, 256), (32, 128), (8, 1024),
                                                                           (16, 512), (32, 256))]),
                              key=["N", "K", "BM"], prune_configs_by={"early_config_prune": _fitting})(_int8_kernel)
_INT4_TUNED = triton.autotune(_configs([dict(BN=bn) for bn in (16, 32, 64, 128)]), key=["N", "K", "BM"],
                              prune_configs_by={"early_config_prune": _fitting})(_int4_kernel)


def _prepare(x: torch.Tensor, n: int):
    rows = x.reshape(-1, x.shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    M = rows.shape[0]
    if M > MAX_ROWS:
        raise ValueError(f"weight-only matvec: at most {MAX_ROWS} input rows, got {M}")
    y = torch.empty(M, n, device=x.device, dtype=x.dtype)
    BM = min(4, triton.next_power_of_2(M))
    return rows, y, BM, (lambda meta: (triton.cdiv(n, meta["BN"]), triton.cdiv(M, BM)))


def int8_matvec(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (..., K) @ (q * scale[:, None]).T for q (N, K) int8: (..., N) in x's dtype."""
    check_device(x, q, scale)
    N, K = q.shape
    rows, y, BM, grid = _prepare(x, N)
    args = (rows, q.view(torch.uint8), scale, y, rows.shape[0], N, K, rows.stride(0), y.stride(0))
    if interpreting():
        _int8_kernel[grid({"BN": 16})](*args, BM=BM, BN=16, BK=64)
    else:
        _INT8_TUNED[grid](*args, BM=BM)
    return y.reshape(*x.shape[:-1], N)


def int4_matvec(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """x (..., K) times the int4 weight (q, scale, offset) of the module docstring: (..., N) in x's dtype."""
    check_device(x, q, scale, offset)
    (NG, N), K = scale.shape, x.shape[-1]
    G = 2 * q.shape[1] // NG
    rows, y, BM, grid = _prepare(x, N)
    args = (rows, q, scale, offset, y, rows.shape[0], N, K, NG, rows.stride(0), y.stride(0))
    if interpreting():
        _int4_kernel[grid({"BN": 16})](*args, BM=BM, BN=16, BK=G)
    else:
        _INT4_TUNED[grid](*args, BM=BM, BK=G)
    return y.reshape(*x.shape[:-1], N)
