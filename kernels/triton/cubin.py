"""The weight-only matvec kernels built for sm_90 on a machine without a GPU (Triton ships ptxas and
cuobjdump): their inline PTX only runs on a GPU, so the interpreter's tests never compile it; this does,
for the tests (every kernel builds, without spills) and for benchmarks/weight_only_sass.py (registers,
shared memory and instructions per weight of every autotune config)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import NamedTuple

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import weight_only as wo

_INTS = ("M", "N", "K", "NG", "sxm", "srm", "sym")
_INT4 = {"x": "*bf16", "q": "*u8", "scale": "*bf16", "offset": "*bf16", "res": "*bf16", "y": "*bf16",
         "part": "*fp32", "count": "*i32"}
WEIGHT_ONLY = {  # kernel, its autotuner (the configs), signature (bf16 inputs), the GPU's fixed constexprs
    "int8": (wo._int8_kernel, wo._INT8_TUNED,
             {"x": "*bf16", "q": "*u8", "scale": "*bf16", "res": "*bf16", "y": "*bf16", "N": "i32", "K": "i32"},
             {"HAS_RES": False}),
    "int8 rows": (wo._int8_rows_kernel, wo._INT8_ROWS_TUNED,
                  {"x": "*bf16", "q": "*u8", "scale": "*bf16", "res": "*bf16", "y": "*bf16", "part": "*fp32",
                   "count": "*i32", **{k: "i32" for k in _INTS if k != "NG"}}, {"HAS_RES": False, "F32_DOT": False}),
    "int4 row": (wo._int4_row_kernel, wo._INT4_ROW_TUNED, {**_INT4, "N": "i32", "K": "i32", "NG": "i32"},
                 {"G": 128, "HAS_RES": False, "ASM": True}),
    "int4": (wo._int4_kernel, wo._INT4_TUNED, {**_INT4, **{k: "i32" for k in _INTS}},
             {"G": 128, **dict(zip(("BIAS", "MAGIC"), wo._NIBBLE_BIAS[torch.bfloat16])), "HAS_RES": False,
              "F32_DOT": False, "ASM": True}),
}


class Build(NamedTuple):
    registers: int
    stack: int
    shared: int
    sass: str


def build(fn, signature: dict, constexprs: dict, warps: int, stages: int) -> Build:
    """One specialisation for sm_90, pointers and integer arguments marked 16-divisible as the launcher's
    are (the 7B's sizes are)."""
    signature = {**signature, **{k: "constexpr" for k in constexprs}}
    attrs = {(i,): [["tt.divisibility", 16]] for i, (name, kind) in enumerate(signature.items())
             if kind.startswith("*") or name in _INTS}
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True, check=True).stdout
    fields = dict(part.split(":") for part in usage.split() if part.startswith(("REG:", "STACK:")))
    return Build(int(fields["REG"]), int(fields["STACK"]), kernel.metadata.shared, sass)
