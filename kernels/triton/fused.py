"""Fused inference kernels for the work around the mLSTM kernel in xLSTM Large blocks.

Eagerly, each norm, soft-cap and SwiGLU is 3-8 PyTorch kernels plus dtype copies: ~1,100 launches and
~1.7 ms per 7B decode step, and ~70 ms of an 8k prefill. Each function here is one pass over its rows,
reads its inputs where they lie (slices of the fused projections, the kernel's (B, NH, S, DH) layout) and
rounds to the input dtype exactly where the PyTorch modules do, so results match the eager modules up to
the order of the float32 reductions. No autograd: the blocks use them under torch.no_grad only.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device

__all__ = ["headwise_norm_gate", "rms_norm", "soft_cap_gates", "swiglu"]


@triton.jit
def _rms_norm_kernel(x, res, w, y, xsum, D, sx, sr, eps, HAS_RES: tl.constexpr, BD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # row * D passes 2**31 in long prompts
    d = tl.arange(0, BD)
    mask = d < D
    xv = tl.load(x + row * sx + d, mask=mask, other=0.0)
    if HAS_RES:  # the residual sum, rounded to the stream's dtype as `x + r` is
        xv = (xv.to(tl.float32) + tl.load(res + row * sr + d, mask=mask, other=0.0).to(tl.float32)).to(xv.dtype)
        tl.store(xsum + row * D + d, xv, mask=mask)
    xf = xv.to(tl.float32)
    normed = (xf * tl.rsqrt(tl.sum(xf * xf, 0) / D + eps)).to(xv.dtype)
    wv = tl.load(w + d, mask=mask, other=0.0).to(tl.float32)
    tl.store(y + row * D + d, (normed.to(tl.float32) * wv).to(y.dtype.element_ty), mask=mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(..., D) as (rows, D) without a copy when the last dim is dense."""
    return x.reshape(-1, x.shape[-1]) if x.stride(-1) == 1 else x.contiguous().view(-1, x.shape[-1])


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """RMSNorm over the last dim (float32 reduction, weight applied in x's dtype).

    With `residual`: normalises s = x + residual and returns (normed, s), the pre-norm residual update
    and the next norm in one pass.
    """
    check_device(x, weight, residual)
    D = x.shape[-1]
    x2 = _rows(x)
    y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    s = torch.empty_like(y) if residual is not None else y
    r2 = _rows(residual) if residual is not None else x2
    BD = triton.next_power_of_2(D)
    _rms_norm_kernel[(x2.shape[0],)](x2, r2, weight, y, s, D, x2.stride(0), r2.stride(0), eps,
                                     HAS_RES=residual is not None, BD=BD, num_warps=min(16, max(1, BD // 512)))
    return (y, s) if residual is not None else y


@triton.jit
def _headwise_norm_gate_kernel(h, o, w, y, S, NH, DH, shb, shh, shs, sob, sos, eps, BD: tl.constexpr):
    row, head = tl.program_id(0).to(tl.int64), tl.program_id(1)  # row = b * S + s
    b, s = row // S, row % S
    d = tl.arange(0, BD)
    mask = d < DH
    hv = tl.load(h + b * shb + head * shh + s * shs + d, mask=mask, other=0.0).to(y.dtype.element_ty)
    hf = hv.to(tl.float32)
    mean = tl.sum(hf, 0) / DH
    centred = tl.where(mask, hf - mean, 0.0)
    normed = (centred * tl.rsqrt(tl.sum(centred * centred, 0) / DH + eps)).to(y.dtype.element_ty)
    col = head * DH + d
    scaled = (normed.to(tl.float32) * tl.load(w + col, mask=mask, other=0.0).to(tl.float32)).to(y.dtype.element_ty)
    ov = tl.load(o + b * sob + s * sos + col, mask=mask, other=0.0).to(tl.float32)
    gate = tl.sigmoid(ov).to(y.dtype.element_ty)
    tl.store(y + row * NH * DH + col, (scaled.to(tl.float32) * gate.to(tl.float32)).to(y.dtype.element_ty), mask=mask)


def headwise_norm_gate(h: torch.Tensor, o: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm of each head of the mLSTM output h (B, NH, S, DH), times weight, times sigmoid(o):
    (B, S, NH * DH) in o's dtype, the input of out_proj. o (B, S, NH * DH) may be a strided slice."""
    check_device(h, o, weight)
    B, NH, S, DH = h.shape
    if o.stride(-1) != 1:
        o = o.contiguous()
    y = torch.empty(B, S, NH * DH, device=h.device, dtype=o.dtype)
    BD = triton.next_power_of_2(DH)
    _headwise_norm_gate_kernel[(B * S, NH)](h, o, weight, y, S, NH, DH, h.stride(0), h.stride(1), h.stride(2),
                                            o.stride(0), o.stride(1), eps, BD=BD,
                                            num_warps=min(8, max(1, BD // 256)))
    return y


@triton.jit
def _swiglu_kernel(g, u, y, F, sg, su, BF: tl.constexpr):
    row, blk = tl.program_id(0).to(tl.int64), tl.program_id(1)  # 131072 rows x 21888 > 2**31
    col = blk * BF + tl.arange(0, BF)
    mask = col < F
    gv = tl.load(g + row * sg + col, mask=mask, other=0.0).to(tl.float32)
    act = (gv * tl.sigmoid(gv)).to(y.dtype.element_ty)
    uv = tl.load(u + row * su + col, mask=mask, other=0.0).to(tl.float32)
    tl.store(y + row * F + col, (act.to(tl.float32) * uv).to(y.dtype.element_ty), mask=mask)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for (..., F) tensors (e.g. the two halves of a fused up projection)."""
    check_device(gate, up)
    F_ = gate.shape[-1]
    g2, u2 = _rows(gate), _rows(up)
    y = torch.empty(gate.shape, device=gate.device, dtype=gate.dtype)
    BF = min(2048, triton.next_power_of_2(F_))
    _swiglu_kernel[(g2.shape[0], triton.cdiv(F_, BF))](g2, u2, y, F_, g2.stride(0), u2.stride(0), BF=BF,
                                                       num_warps=4)
    return y


@triton.jit
def _soft_cap(v, cap, CAP: tl.constexpr):
    """cap * tanh(v / cap), rounded like the eager ops in v's dtype; float32 out."""
    if CAP:
        t = (v.to(tl.float32) / cap).to(v.dtype).to(tl.float32)
        t = (2.0 * tl.sigmoid(2.0 * t) - 1.0).to(v.dtype).to(tl.float32)
        v = (cap * t).to(v.dtype)
    return v.to(tl.float32)


@triton.jit
def _soft_cap_gates_kernel(i, f, io, fo, N, S, NH, sb, ss, cap, CAP: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # over (B, NH, S): the output layout
    b, rest = idx // (NH * S), idx % (NH * S)
    head, s = rest // S, rest % S
    src = b * sb + s * ss + head
    mask = idx < N
    tl.store(io + idx, _soft_cap(tl.load(i + src, mask=mask, other=0.0), cap, CAP), mask=mask)
    tl.store(fo + idx, _soft_cap(tl.load(f + src, mask=mask, other=0.0), cap, CAP), mask=mask)


def soft_cap_gates(i: torch.Tensor, f: torch.Tensor, cap: float | None):
    """Input and forget gate pre-activations (B, S, NH), slices of one projection with equal strides,
    soft-capped and laid out as the mLSTM kernels take them: float32 (B, NH, S)."""
    check_device(i, f)
    B, S, NH = i.shape
    if i.stride() != f.stride() or i.stride(-1) != 1:
        i, f = i.contiguous(), f.contiguous()
    io = torch.empty(B, NH, S, device=i.device, dtype=torch.float32)
    fo = torch.empty_like(io)
    BLOCK = 64 if B * NH * S <= 1024 else 1024
    grid = (triton.cdiv(B * NH * S, BLOCK),)
    _soft_cap_gates_kernel[grid](i, f, io, fo, B * NH * S, S, NH, i.stride(0), i.stride(1), float(cap or 1.0),
                                 CAP=cap is not None, BLOCK=BLOCK)
    return io, fo
