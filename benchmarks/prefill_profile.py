"""xLSTM-7B prefill on one GPU: where the GPU time goes (kernel kinds, CUPTI), fused vs PyTorch pointwise.

Rows: float32 logits of every position (what `bench prefill` times), the backbone alone (the lm_head +
logits cost is the difference) and last-position logits only (`logits_to_keep=1`, what generation's
prefill asks for), each with the blocks' pointwise work as fused Triton kernels (the default on CUDA) and
as PyTorch ops. Both are compared with a float32 copy of the model. Writes $OUT/prefill.md.

    PYTHONPATH=/tmp/pkg python3 /tmp/pkg/xlstm_zoo/benchmarks/prefill_profile.py
"""

from __future__ import annotations

import copy
import os

import torch

from xlstm_zoo.registry.bench.report import Report, _rel, _versions
from xlstm_zoo.registry.bench.models import SEVEN_B, _ms, _set_pointwise, _zoo_7b, by_kind, kernel_times


def kind(name: str) -> str:
    n = name.lower()
    if n.startswith("_fw_") or n.startswith("_bw_"):
        return "mLSTM chunkwise (Triton)"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "sm90_xmma", "gemv")):
        return "matrix products (cuBLAS)"
    if any(k in n for k in ("rms_norm", "norm_gate", "swiglu", "soft_cap")):
        return "fused pointwise (Triton)"
    if "memcpy" in n or "copy" in n or "cat" in n:
        return "copies / layout"
    if "reduce" in n or "norm" in n or "scan" in n:
        return "reductions / norms / scans"
    return "elementwise (eager)"


def profile(rep, label, step):
    """GPU time of one call of `step` by kernel kind, and its 14 most expensive kernels."""
    times = kernel_times(step, reps=2)
    top = [[n[:90], kind(n), c, t] for n, (c, t) in sorted(times.items(), key=lambda kv: -kv[1][1])[:14]]
    rep.table(f"GPU time of one S=8192 prefill, {label}, by kernel kind", ["kernels", "count", "GPU ms"],
              by_kind(times, kind))
    rep.table(f"top kernels, S=8192, {label}", ["kernel", "kind", "count", "GPU ms"], top)


def main():
    rep = Report()
    rep.add("## xLSTM-7B prefill profile, fused vs PyTorch pointwise (benchmarks/prefill_profile.py)\n\n" + _versions())
    model = _zoo_7b()
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = {S: torch.randint(0, SEVEN_B["vocab_size"], (1, S), device="cuda", generator=gen) for S in (8192, 2048)}
    rows, last = [], {}

    def timed(name, fn, S):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        ms = _ms(lambda: fn(ids[S]), reps=9, warmup=2)
        rows.append([S, name, ms, S / ms * 1e3, (torch.cuda.max_memory_allocated() - base) / 2**30])
        print(rows[-1], flush=True)

    with torch.no_grad():
        for pointwise, label in (("auto", "fused pointwise (default)"), ("native", "PyTorch pointwise")):
            _set_pointwise(model, pointwise)
            for S in (8192, 2048):
                timed(f"{label}, float32 logits of all positions", model, S)
                timed(f"{label}, backbone only", model.backbone, S)
                timed(f"{label}, last-position logits", lambda x: model(x, logits_to_keep=1), S)
            last[label] = model(ids[2048]).logits[:, -64:]
            profile(rep, label, lambda: model(ids[8192], logits_to_keep=1))
        reference = copy.deepcopy(model).float()
        want = reference(ids[2048]).logits[:, -64:]
        del reference
        for label, got in last.items():
            rep.add(f"S=2048, last 64 positions, {label} bf16 against the float32 model: logits rel "
                    f"{_rel(got, want):.2e}, argmax agreement {(got.argmax(-1) == want.argmax(-1)).float().mean().item():.3f}")
    rep.table("xLSTM-7B prefill, B=1, bf16 (floor 38 / 152 ms at S = 2048 / 8192)",
              ["S", "implementation", "ms", "tokens/s", "peak extra GiB"], sorted(rows, key=lambda r: r[0]))
    with open(os.path.join(os.environ.get("OUT", "."), "prefill.md"), "w") as f:
        f.write("\n\n".join(rep.parts) + "\n")


if __name__ == "__main__":
    main()
