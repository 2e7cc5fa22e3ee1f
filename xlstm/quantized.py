"""Linear layers with weight-only int8 (per row) or int4 (per group of 128 along the input) weights.

The zoo's own format, for decode: on CUDA, inputs of up to MAX_ROWS rows (decode steps) run the Triton
matvec kernels, which read the packed weights once (no torch.compile); longer inputs (prefill) and other
devices multiply by the dequantized weight, so the CPU runs it too. Any input width is covered (the last
group is zero-padded: the 7B's FFN down projection has 10944 = 85.5 x 128 inputs). 7B decode on an H200,
B=1: int8 2.63 ms/token (torchao compiled: 2.84), int4 2.95 (torchao's tinygemm: 2.90); benchmarks/README.md.

int8: scale = max |w| / 127 per row, q = round(w / scale). int4: per group, scale = (max - min) / 15
(the range clipped as quantize_int4 says), zero point z = round(-min / scale) in [0, 15],
q = clamp(round(w / scale) + z, 0, 15); stored as w = q * scale + offset with offset = -z * scale (the
layout of kernels/triton/weight_only.py).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import triton_available

BITS = {"int8-weight-only": 8, "int4-weight-only": 4}
GROUP = 128
CLIPS = (1.0, 0.95, 0.9, 0.85, 0.8)


def quantize_int8(w: torch.Tensor):
    """(q int8 (N, K), scale (N,) in w's dtype)."""
    wf = w.detach().float()
    scale = (wf.abs().amax(1).clamp_min(1e-12) / 127).to(w.dtype)  # q is rounded against the stored scale
    return (wf / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8), scale


def _int4_group(wf: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, dtype: torch.dtype):
    """q, scale, zero of groups wf (..., G) over the range [lo, hi] (which holds 0)."""
    scale = ((hi - lo) / 15).clamp_min(1e-12).to(dtype).float()  # q is rounded against the stored scale
    zero = (-lo / scale).round().clamp(0, 15)
    return ((wf / scale[..., None]).round() + zero[..., None]).clamp(0, 15), scale, zero


def quantize_int4(w: torch.Tensor, group: int = GROUP):
    """(q uint8 (N, Kp / 2), scale, offset (Kp / group, N) in w's dtype), Kp = K rounded up to `group`.

    Each group's range is its min..max shrunk by the factor of CLIPS with the least squared error (an
    outlier then costs its own rounding, not every other weight's resolution)."""
    N, K = w.shape
    NG = -(-K // group)
    wf = F.pad(w.detach().float(), (0, NG * group - K)).view(N, NG, group)
    lo, hi = wf.amin(2).clamp_max(0), wf.amax(2).clamp_min(0)  # the range holds 0: padding is exact
    best = None
    for clip in CLIPS:
        q, scale, zero = _int4_group(wf, clip * lo, clip * hi, w.dtype)
        err = ((q - zero[..., None]) * scale[..., None] - wf).square().sum(2)
        if best is None:
            best = [err, q, scale, zero]
        else:
            better = err < best[0]
            best = [torch.where(better, err, best[0]), torch.where(better[..., None], q, best[1]),
                    torch.where(better, scale, best[2]), torch.where(better, zero, best[3])]
    _, q, scale, zero = best
    q = q.to(torch.uint8)
    half = group // 2
    packed = q[..., :half] | (q[..., half:] << 4)  # low nibble: first half of the group
    return packed.reshape(N, NG * half), scale.T.contiguous().to(w.dtype), (-zero * scale).T.contiguous().to(w.dtype)


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, K: int) -> torch.Tensor:
    NG, N = scale.shape
    half = q.shape[1] // NG
    packed = q.view(N, NG, half)
    nibbles = torch.cat([packed & 15, packed >> 4], 2).to(scale.dtype)
    return (nibbles * scale.T[..., None] + offset.T[..., None]).reshape(N, -1)[:, :K]


class WeightOnlyLinear(nn.Module):
    """nn.Linear's forward over int8 / int4 weights; the packed tensors are frozen parameters (so the
    model's parameters are its weights, in bytes and addresses, as the decode graph and benchmarks count)."""

    def __init__(self, linear: nn.Linear, bits: int):
        super().__init__()
        self.bits, self.in_features, self.out_features = bits, linear.in_features, linear.out_features
        frozen = lambda t: nn.Parameter(t, requires_grad=False)  # noqa: E731
        w = linear.weight
        if bits == 8:
            q, scale = quantize_int8(w)
            self.q, self.scale, self.offset = frozen(q), frozen(scale), None
        else:
            self.q, self.scale, self.offset = map(frozen, quantize_int4(w))
        self.bias = None if linear.bias is None else frozen(linear.bias.detach())

    def weight_dequantized(self) -> torch.Tensor:
        if self.bits == 8:
            return self.q.to(self.scale.dtype) * self.scale[:, None]
        return dequantize_int4(self.q, self.scale, self.offset, self.in_features)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x W^T + bias [+ residual]; without a bias the kernels add the residual before their one rounding."""
        if not torch.is_grad_enabled() and triton_available():
            from ..kernels.triton import _common, weight_only
            if (x.is_cuda or _common.interpreting()) and x.numel() <= weight_only.MAX_ROWS * x.shape[-1]:
                fused = residual if self.bias is None else None
                y = (weight_only.int8_matvec(x, self.q, self.scale, fused) if self.bits == 8
                     else weight_only.int4_matvec(x, self.q, self.scale, self.offset, fused))
                y = y if self.bias is None else y + self.bias
                return y if residual is None or fused is not None else y + residual
        y = F.linear(x, self.weight_dequantized().to(x.dtype), self.bias)
        return y if residual is None else y + residual

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int{self.bits}"
