"""Which compute kernels a model uses. NX-AI / mlstm_kernels / transformers names are accepted and mapped."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator

from .base import Schema

# Names used by mlstm_kernels / NX-AI xlstm / transformers, mapped onto ours (same math, different code).
KERNEL_ALIASES = {
    "chunkwise--native_autograd": "chunkwise--native",
    "chunkwise--native_custbw": "chunkwise--native",
    "chunkwise--triton_limit_chunk": "chunkwise--triton",
    "chunkwise--triton_xl_chunk": "chunkwise--triton",
    "parallel--native_autograd": "parallel--native",
    "parallel--native_custbw": "parallel--native",
    "parallel--native_stablef_autograd": "parallel--native",
    "parallel--native_stablef_custbw": "parallel--native",
    "parallel--triton_limit_headdim": "chunkwise--triton",
    "native_sequence__native": "native",
    "native_sequence__triton": "triton",
    "triton_fused": "triton",
    "vanilla": "native",  # NX-AI sLSTM backends
    "cuda": "auto",
}

ChunkwiseKernel = Literal[
    "chunkwise--auto", "chunkwise--native", "chunkwise--triton", "parallel--native",
    "chunkwise--native_autograd", "chunkwise--native_custbw", "chunkwise--triton_limit_chunk",
    "chunkwise--triton_xl_chunk", "parallel--native_autograd", "parallel--native_custbw",
    "parallel--native_stablef_autograd", "parallel--native_stablef_custbw", "parallel--triton_limit_headdim",
]
SequenceKernel = Literal["auto", "native", "triton", "native_sequence__native", "native_sequence__triton"]
StepKernel = Literal["auto", "native", "triton", "triton_fused"]
SLSTMKernel = Literal["auto", "native", "triton", "vanilla", "cuda"]
DType = Literal["float32", "bfloat16", "float16", "float64"]
DTYPES = get_args(DType)
"""The dtype names every command line and config takes (registry.factory.parse_dtype makes them torch dtypes)."""


def canonical_kernel_name(name: str) -> str:
    """Our name for a kernel given ours or a reference implementation's."""
    return KERNEL_ALIASES.get(name, name)


class KernelConfig(Schema):
    """Kernel choice for the mLSTM and sLSTM cells. `auto` takes Triton on CUDA and native PyTorch elsewhere."""

    chunkwise_kernel: ChunkwiseKernel = "chunkwise--auto"
    """Kernel for sequences (training and prefill)."""
    sequence_kernel: SequenceKernel = "auto"
    """Recurrent loop used in inference mode for short inputs."""
    step_kernel: StepKernel = "auto"
    """Single-token kernel used for generation."""
    slstm_kernel: SLSTMKernel = "auto"
    """sLSTM recurrence kernel."""
    pointwise_kernel: Literal["auto", "native", "triton"] = "auto"
    """Norms, gate soft-caps, SwiGLU and residual adds of xLSTM Large blocks without autograd (inference):
    `auto` runs them as fused Triton kernels on CUDA, one pass each, and as PyTorch ops elsewhere."""
    mode: Literal["train", "inference", "train_with_padding"] = "train"
    """train: the chunkwise kernel for every length; inference: single tokens go through the step kernel."""
    chunk_size: int = Field(64, ge=1, le=1024)
    eps: float = Field(1e-6, gt=0)
    """Normaliser eps of the mLSTM (added in stabilised space, as in mlstm_kernels)."""
    autocast_kernel_dtype: DType = "bfloat16"
    """Dtype the mLSTM kernel inputs are cast to under torch.autocast."""
    inference_state_dtype: DType = "float32"
    """Dtype of recurrent states carried between calls."""
    max_inference_chunksize: int = Field(16384, ge=1)
    """Without autograd, longer inputs run in pieces of this many tokens (B rows of this / B positions),
    the state carried from one to the next (transformers' name): peak memory does not grow with the
    prompt. Same result as one piece."""

    @field_validator("chunkwise_kernel", "sequence_kernel", "step_kernel", "slstm_kernel")
    @classmethod
    def _canonical(cls, name: str) -> str:
        return canonical_kernel_name(name)

    @field_validator("mode")
    @classmethod
    def _mode(cls, mode: str) -> str:
        # Our chunkwise kernels take any length, so padding for training is never needed.
        return "train" if mode == "train_with_padding" else mode
