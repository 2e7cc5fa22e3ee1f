"""What every Triton kernel module needs: the device guard and block-size choices."""

from __future__ import annotations

import os

import torch
import triton

from .. import KernelUnavailableError


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1, read when triton starts)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def check_device(*tensors: torch.Tensor) -> None:
    """Fail early and clearly instead of deep inside Triton's launcher."""
    if interpreting():
        return
    for t in tensors:
        if t is not None and not t.is_cuda:
            raise KernelUnavailableError(
                f"Triton kernels need CUDA tensors, got a tensor on {t.device}; use the native kernel "
                "(e.g. 'chunkwise--native' or 'auto') or set TRITON_INTERPRET=1 before importing triton"
            )


def kernel_dtype(x: torch.Tensor) -> torch.dtype:
    """Triton computes in the input's 16-bit type or in float32 (float64 is computed in float32)."""
    return x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32


def dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs get exact float32 products; 16-bit inputs use the tensor cores anyway."""
    return "ieee" if dtype == torch.float32 else "tf32"


def feature_block(dim: int, cap: int) -> int:
    """A power-of-two block for a head dimension: the largest one up to `cap` that divides it, else a masked one."""
    for b in (cap, cap // 2, cap // 4):
        if b >= 16 and dim % b == 0:
            return b
    return min(cap, max(16, triton.next_power_of_2(dim)))
