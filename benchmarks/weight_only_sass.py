"""The weight-only matvec kernels (kernels/triton/weight_only.py) built for sm_90 on a machine without a
GPU: registers, stack (spills), shared memory, the weight load instructions and the instructions per
weight of the main loop, for every autotune config, from the cubin (kernels/triton/cubin.py builds it). What
a GPU run cannot be spared for: at HBM speed (~4.2 TB/s) an int4 matvec meets ~8.4e12 weights per
second, and an H200 issues ~3.3e13 thread-instructions per second: the loop must stay well under ~4
instructions per weight, or the kernel is bound by issue, not bandwidth.

    python benchmarks/weight_only_sass.py
"""

import collections
import re

import triton

from xlstm_zoo.kernels.triton import weight_only as wo
from xlstm_zoo.kernels.triton.cubin import WEIGHT_ONLY, build

WEIGHTS_PER_STEP = {  # weights one loop step of a program reads, from its config
    "int8": lambda c: c["BN"] * c["BK"], "int8 rows": lambda c: c["BN"] * c["BK"],
    "int4 row": lambda c: c["BN"] * c["GPI"] * 128, "int4": lambda c: c["BN"] * 128}


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
    for name, (fn, tuned, signature, fixed) in WEIGHT_ONLY.items():
        configs = wo._fitting(tuned.configs, {}) if name == "int8" else tuned.configs
        for config in configs:
            reg, stack, shared, sass = build(fn, signature, {**config.kwargs, **fixed}, config.num_warps,
                                             config.num_stages)
            loads = collections.Counter(re.findall(r"(?:LDGSTS|LDG)\.E[.\w]*", sass))
            body = main_loop(sass)
            ops = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", i).split()[0].split(".")[0] for i in body)
            per_thread = WEIGHTS_PER_STEP[name](config.kwargs) / (32 * config.num_warps)
            top = ", ".join(f"{op} {n / per_thread:.2f}" for op, n in ops.most_common(5))
            print(f"| {name} | {config.kwargs} | {config.num_warps} | {config.num_stages} | {reg} | {stack} | "
                  f"{shared / 1024:.1f} | {dict(loads)} | {len(body) / per_thread:.2f} | {top} |", flush=True)


if __name__ == "__main__":
    main()
