"""The weight-only matvec kernels (kernels/triton/weight_only.py) built for sm_90 on a machine without a
GPU: registers, stack (spills) and the weight / input load widths of every autotune config, from the
cubin (cuobjdump, shipped with Triton). What a GPU run cannot be spared for: 16-byte weight loads, no
slow int-to-float conversions (I2F), no spills.

    python benchmarks/weight_only_sass.py
"""

import collections
import os
import re
import subprocess

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from xlstm_zoo.kernels.triton import weight_only as wo

CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
COMMON = {"N": "i32", "K": "i32"}
KERNELS = {
    "int8": (wo._int8_kernel, wo._INT8_TUNED, {"x": "*bf16", "q": "*u8", "scale": "*bf16", "y": "*bf16", **COMMON},
             {}),
    "int4": (wo._int4_kernel, wo._INT4_TUNED, {"x": "*bf16", "q": "*u8", "scale": "*bf16", "offset": "*bf16",
                                               "y": "*bf16", **COMMON, "NG": "i32"}, {"G": 128}),
}


def build(fn, signature: dict, constexprs: dict, warps: int, path: str) -> str:
    """SASS of one specialisation; pointers and strides marked 16-divisible as the launcher's are."""
    signature = {**signature, "sxm": "i32", "sym": "i32", **{k: "constexpr" for k in ("BN", "BK", *constexprs)
                                                             if k not in signature}}
    attrs = {(i,): [["tt.divisibility", 16]] for i, (name, kind) in enumerate(signature.items())
             if kind.startswith("*") or name in ("K", "N", "sxm", "sym")}
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    with open(path, "wb") as f:
        f.write(kernel.asm["cubin"])
    usage = subprocess.run([CUOBJDUMP, "-res-usage", path], capture_output=True, text=True).stdout
    sass = subprocess.run([CUOBJDUMP, "-sass", path], capture_output=True, text=True).stdout
    return usage, sass


def main() -> None:
    print("| kernel | config | warps | registers | stack bytes | loads | I2F |")
    print("|---|---|---|---|---|---|---|")
    for name, (fn, tuned, signature, extra) in KERNELS.items():
        for config in wo._fitting(tuned.configs, {}):
            usage, sass = build(fn, signature, {**config.kwargs, **extra}, config.num_warps, "/tmp/wo.cubin")
            reg, stack = re.search(r"REG:(\d+).*?STACK:(\d+)", usage).groups()
            loads = collections.Counter(re.findall(r"LDG\.E[.\w]*", sass))
            print(f"| {name} | {config.kwargs} | {config.num_warps} | {reg} | {stack} | {dict(loads)} | "
                  f"{len(re.findall(r' I2F', sass))} |", flush=True)


if __name__ == "__main__":
    main()
