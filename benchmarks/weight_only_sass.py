"""The weight-only matvec kernels (kernels/triton/weight_only.py) built for sm_90 on a machine without a
GPU: registers, stack (spills), shared memory, the weight load instructions and the instructions per
weight of the main loop, for every autotune config, from the cubin (cuobjdump, shipped with Triton). What
a GPU run cannot be spared for: at HBM speed (~4.2 TB/s) an int4 matvec meets ~8.4e12 weights per
second, and an H200 issues ~3.3e13 thread-instructions per second: the loop must stay well under ~4
instructions per weight, or the kernel is bound by issue, not bandwidth.

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
INTS = ("M", "N", "K", "NG", "sxm", "srm", "sym")
KERNELS = {  # signature, fixed constexprs, weights per loop step from the config
    "int8": (wo._int8_kernel, wo._INT8_TUNED,
             {"x": "*bf16", "q": "*u8", "scale": "*bf16", "res": "*bf16", "y": "*bf16", "N": "i32", "K": "i32",
              "sxm": "i32", "srm": "i32", "sym": "i32"}, {"HAS_RES": False},
             lambda c: c["BN"] * c["BK"]),
    "int8 rows": (wo._int8_rows_kernel, wo._INT8_ROWS_TUNED,
                  {"x": "*bf16", "q": "*u8", "scale": "*bf16", "res": "*bf16", "y": "*bf16", "part": "*fp32",
                   "count": "*i32", **{k: "i32" for k in INTS if k != "NG"}}, {"HAS_RES": False, "F32_DOT": False},
                  lambda c: c["BN"] * c["BK"]),
    "int4 row": (wo._int4_row_kernel, wo._INT4_ROW_TUNED,
                 {"x": "*bf16", "q": "*u8", "scale": "*bf16", "offset": "*bf16", "res": "*bf16", "y": "*bf16",
                  "part": "*fp32", "count": "*i32", "N": "i32", "K": "i32", "NG": "i32"},
                 {"G": 128, "HAS_RES": False, "ASM": True}, lambda c: c["BN"] * c["GPI"] * 128),
    "int4": (wo._int4_kernel, wo._INT4_TUNED,
             {"x": "*bf16", "q": "*u8", "scale": "*bf16", "offset": "*bf16", "res": "*bf16", "y": "*bf16",
              "part": "*fp32", "count": "*i32", **{k: "i32" for k in INTS}},
             {"G": 128, "BIAS": 128.0, "MAGIC": 0x4300, "HAS_RES": False, "F32_DOT": False, "ASM": True},
             lambda c: c["BN"] * 128),
}


def build(fn, signature: dict, constexprs: dict, warps: int, stages):
    """Resource usage, SASS and shared memory of one specialisation; pointers and integer arguments marked
    16-divisible as the launcher's are (the 7B's sizes are)."""
    signature = {**signature, **{k: "constexpr" for k in constexprs}}
    attrs = {(i,): [["tt.divisibility", 16]] for i, (name, kind) in enumerate(signature.items())
             if kind.startswith("*") or name in INTS}
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
    path = "/tmp/weight_only_sass.cubin"
    with open(path, "wb") as f:
        f.write(kernel.asm["cubin"])
    usage = subprocess.run([CUOBJDUMP, "-res-usage", path], capture_output=True, text=True).stdout
    sass = subprocess.run([CUOBJDUMP, "-sass", path], capture_output=True, text=True).stdout
    return usage, sass, kernel.metadata.shared


def main_loop(sass: str) -> list[str]:
    """The instructions of the longest backward branch's body (the loop over K)."""
    lines = [(int(a, 16), i) for a, i in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    spans = [(int(m.group(1), 16), a) for a, i in lines
             if (m := re.search(r"BRA\s+(?:`\()?(?:0x)?([0-9a-f]+)", i)) and int(m.group(1), 16) < a]
    lo, hi = max(spans, key=lambda s: s[1] - s[0])
    return [i for a, i in lines if lo <= a <= hi]


def main() -> None:
    print(f"triton {triton.__version__}, sm_90, bf16 inputs")
    print("| kernel | config | warps | stages | registers | stack bytes | shared KiB | weight loads | "
          "instructions / weight (main loop) | top opcodes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (fn, tuned, signature, fixed, weights) in KERNELS.items():
        configs = wo._fitting(tuned.configs, {}) if name == "int8" else tuned.configs
        for config in configs:
            usage, sass, shared = build(fn, signature, {**config.kwargs, **fixed}, config.num_warps, config.num_stages)
            reg, stack = re.search(r"REG:(\d+).*?STACK:(\d+)", usage).groups()
            loads = collections.Counter(re.findall(r"(?:LDGSTS|LDG)\.E[.\w]*", sass))
            body = main_loop(sass)
            ops = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", i).split()[0].split(".")[0] for i in body)
            per_thread = weights(config.kwargs) / (32 * config.num_warps)
            top = ", ".join(f"{op} {n / per_thread:.2f}" for op, n in ops.most_common(5))
            print(f"| {name} | {config.kwargs} | {config.num_warps} | {config.num_stages} | {reg} | {stack} | "
                  f"{shared / 1024:.1f} | {dict(loads)} | {len(body) / per_thread:.2f} | {top} |", flush=True)


if __name__ == "__main__":
    main()
