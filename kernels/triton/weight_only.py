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


def _configs(blocks: list[dict], warps=(4, 8)) -> list:
    return [triton.Config(b, num_warps=w) for b in blocks for w in warps]


def _fitting(configs, named_args, **kwargs) -> list:
    """Tiles of at most 64 weights per thread (with the next tile in flight): larger ones spill in sm_90
    builds (benchmarks/weight_only_sass.py)."""
    fit = [c for c in configs if c.kwargs["BN"] * c.kwargs["BK"] <= 64 * 32 * c.num_warps]
    return fit or configs[:1]


@triton.jit
def _small_int_to_float(u, bias: tl.constexpr):
    """u - bias in float32 for integers 0 <= u < 2**23 (int32) without the slow conversion instruction:
    u goes into the mantissa of 2**23, which one subtraction takes off with the bias (at HBM speed an int4
    matvec needs ~10**13 conversions per second, more than the conversion unit gives)."""
    return (u | 0x4B000000).to(tl.float32, bitcast=True) - (8388608.0 + bias)


# One input row per program, the programs of one block of outputs next to each other in the grid (the
# rows of a batch then read its weights from L2). Every loop iteration loads the next tile of weights
# before it works on the current one: without that, each program waits for a memory round trip per tile.
# Measured on an H200 (7B decode step, benchmarks/results/generate-20261201-19*-quantized*.md): int8 /
# int4 at 52% / 12% of copy bandwidth without the look-ahead, 66% / 27% with it; weights two tiles ahead
# and the inputs and group parameters one ahead were slower again (59% / 24%: more registers); int4's group
# parameters alone one ahead changed nothing (3.12 ms of matvec per step either way).


@triton.jit
def _int8_kernel(x, q, scale, y, N, K, sxm, sym, BN: tl.constexpr, BK: tl.constexpr):
    row, n = tl.program_id(0), tl.program_id(1) * BN + tl.arange(0, BN)
    mn = n < N
    weights, xr = q + n[:, None].to(tl.int64) * K, x + row * sxm
    acc = tl.zeros([BN, BK], dtype=tl.float32)  # one sum per lane, reduced once at the end
    k = tl.arange(0, BK)
    u = tl.load(weights + k[None, :], mask=mn[:, None] & (k < K)[None, :], other=0)
    for k0 in range(0, K, BK):
        kn = k0 + BK + k
        u_next = tl.load(weights + kn[None, :], mask=mn[:, None] & (kn < K)[None, :], other=0)
        xv = tl.load(xr + k0 + k, mask=k0 + k < K, other=0.0).to(tl.float32)
        acc += xv[None, :] * _small_int_to_float(u.to(tl.int32) ^ 128, 128.0)  # u ^ 128 = q + 128
        u = u_next
    out = tl.sum(acc, 1) * tl.load(scale + n, mask=mn, other=0.0).to(tl.float32)
    tl.store(y + row * sym + n, out.to(y.dtype.element_ty), mask=mn)


@triton.jit
def _int4_kernel(x, q, scale, offset, y, N, K, NG, sxm, sym, BN: tl.constexpr, BK: tl.constexpr, G: tl.constexpr):
    """A tile is BK / G groups of BN rows (BK / 2 bytes a row); each weight is dequantized by one
    multiply-add (q * scale + offset) and accumulated per lane."""
    HALF: tl.constexpr = G // 2
    GPI: tl.constexpr = BK // G
    row, n = tl.program_id(0), tl.program_id(1) * BN + tl.arange(0, BN)
    mn = n < N
    weights, xr = q + n[:, None, None].to(tl.int64) * (NG * HALF), x + row * sxm
    gi, j = tl.arange(0, GPI), tl.arange(0, HALF)
    at = gi[None, :, None] * HALF + j[None, None, :]
    acc = tl.zeros([BN, GPI, HALF], dtype=tl.float32)
    p = tl.load(weights + at, mask=mn[:, None, None] & (gi < NG)[None, :, None], other=0)
    for g0 in range(0, NG, GPI):
        p_next = tl.load(weights + (g0 + GPI) * HALF + at, mask=mn[:, None, None] & (g0 + GPI + gi < NG)[None, :, None],
                         other=0)
        g = g0 + gi
        sb = g[None, :] * N + n[:, None]
        mg = mn[:, None] & (g < NG)[None, :]
        s = tl.load(scale + sb, mask=mg, other=0.0).to(tl.float32)[:, :, None]
        b = tl.load(offset + sb, mask=mg, other=0.0).to(tl.float32)[:, :, None]
        k = g[:, None] * G + j[None, :]
        xl = tl.load(xr + k, mask=k < K, other=0.0).to(tl.float32)[None, :, :]
        xh = tl.load(xr + k + HALF, mask=k + HALF < K, other=0.0).to(tl.float32)[None, :, :]
        pi = p.to(tl.int32)
        lo = _small_int_to_float(pi & 15, 0.0) * s + b
        hi = _small_int_to_float(pi & 240, 0.0) * (s * 0.0625) + b  # the high nibble, times 16
        acc += xl * lo + xh * hi
        p = p_next
    tl.store(y + row * sym + n, tl.sum(tl.sum(acc, 2), 1).to(y.dtype.element_ty), mask=mn)


# On a GPU each weight shape is tuned once, on first use (before a decode graph is captured: the runner's
# warm-up steps run first); the interpreter takes one small block.
_INT8_TUNED = triton.autotune(_configs([dict(BN=bn, BK=bk) for bn in (8, 16, 32) for bk in (256, 512, 1024)]),
                              key=["N", "K"], prune_configs_by={"early_config_prune": _fitting})(_int8_kernel)
_INT4_TUNED = triton.autotune(_configs([dict(BN=bn, BK=bk) for bn in (8, 16, 32, 64) for bk in (256, 512, 1024)]),
                              key=["N", "K"], prune_configs_by={"early_config_prune": _fitting})(_int4_kernel)


def _prepare(x: torch.Tensor, n: int):
    rows = x.reshape(-1, x.shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    M = rows.shape[0]
    if M > MAX_ROWS:
        raise ValueError(f"weight-only matvec: at most {MAX_ROWS} input rows, got {M}")
    y = torch.empty(M, n, device=x.device, dtype=x.dtype)
    return rows, y, (lambda meta: (M, triton.cdiv(n, meta["BN"])))


def int8_matvec(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (..., K) @ (q * scale[:, None]).T for q (N, K) int8: (..., N) in x's dtype."""
    check_device(x, q, scale)
    N, K = q.shape
    rows, y, grid = _prepare(x, N)
    args = (rows, q.view(torch.uint8), scale, y, N, K, rows.stride(0), y.stride(0))
    if interpreting():
        _int8_kernel[grid({"BN": 16})](*args, BN=16, BK=64)
    else:
        _INT8_TUNED[grid](*args)
    return y.reshape(*x.shape[:-1], N)


def int4_matvec(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """x (..., K) times the int4 weight (q, scale, offset) of the module docstring: (..., N) in x's dtype."""
    check_device(x, q, scale, offset)
    (NG, N), K = scale.shape, x.shape[-1]
    G = 2 * q.shape[1] // NG
    rows, y, grid = _prepare(x, N)
    args = (rows, q, scale, offset, y, N, K, NG, rows.stride(0), y.stride(0))
    if interpreting():
        _int4_kernel[grid({"BN": 16})](*args, BN=16, BK=2 * G, G=G)
    else:
        _INT4_TUNED[grid](*args, G=G)
    return y.reshape(*x.shape[:-1], N)
