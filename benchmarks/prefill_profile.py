"""xLSTM-7B prefill on one GPU: where the GPU time goes (kernel kinds, CUPTI) and the fast paths.

Rows: eager with float32 logits for every position (what `bench prefill` times), the backbone alone
(the lm_head + logits cost is the difference), last-position logits only (`logits_to_keep=1`, what
generation's prefill asks for), and the same with the blocks' non-kernel work compiled
(`xlstm.large.compile_blocks`). Checks the fast paths' logits against eager. Writes $OUT/prefill.md.

    PYTHONPATH=/tmp/pkg python3 /tmp/pkg/xlstm_zoo/benchmarks/prefill_profile.py
"""

from __future__ import annotations

import os
import time

import torch

from xlstm_zoo.registry.bench import Report, _rel, _versions
from xlstm_zoo.registry.bench_models import SEVEN_B, _ms, _zoo_7b, by_kind, kernel_times
from xlstm_zoo.xlstm.large import compile_blocks


def kind(name: str) -> str:
    n = name.lower()
    if n.startswith("_fw_") or n.startswith("_bw_"):
        return "mLSTM chunkwise (Triton)"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "sm90_xmma", "gemv")):
        return "matrix products (cuBLAS)"
    if n.startswith("triton_"):
        return "fused elementwise (inductor)"
    if "memcpy" in n or "copy" in n or "cat" in n:
        return "copies / layout"
    if "reduce" in n or "norm" in n or "scan" in n:
        return "reductions / norms / scans"
    return "elementwise (eager)"


def profile(step):
    """GPU time of one call of `step` by kernel kind, and its 14 most expensive kernels."""
    times = kernel_times(step, reps=2)
    top = [[n[:90], kind(n), c, t] for n, (c, t) in sorted(times.items(), key=lambda kv: -kv[1][1])[:14]]
    return by_kind(times, kind), top


def main():
    rep = Report()
    rep.add("## xLSTM-7B prefill profile and fast paths (benchmarks/prefill_profile.py)\n\n" + _versions())
    model = _zoo_7b()
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = {S: torch.randint(0, SEVEN_B["vocab_size"], (1, S), device="cuda", generator=gen) for S in (8192, 2048)}
    rows, ref = [], {}

    def timed(name, fn, S):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            ms = _ms(lambda: fn(ids[S]), reps=9, warmup=2)
        rows.append([S, name, ms, S / ms * 1e3, (torch.cuda.max_memory_allocated() - base) / 2**30])
        print(rows[-1], flush=True)

    with torch.no_grad():
        for S in (8192, 2048):
            ref[S] = model(ids[S]).logits[:, -64:].clone()
            timed("eager, float32 logits of all positions (bench prefill)", model, S)
            timed("eager, backbone only (no lm_head / logits)", model.backbone, S)
            timed("eager, last-position logits (logits_to_keep=1)", lambda x: model(x, logits_to_keep=1), S)
            last = model(ids[S], logits_to_keep=1).logits
            rep.add(f"S={S}: logits_to_keep=1 vs all positions' last row: max abs diff "
                    f"{(last[:, -1] - ref[S][:, -1]).abs().max().item():.3g}")
        eager_rows, eager_top = profile(lambda: model(ids[8192]))
        rep.table("GPU time of one eager S=8192 prefill (all logits), by kernel kind", ["kernels", "count", "GPU ms"],
                  eager_rows)
        rep.table("top kernels, eager S=8192", ["kernel", "kind", "count", "GPU ms"], eager_top)
        try:
            fast(rep, model, ids, ref, timed)
        except Exception:  # keep the eager numbers
            import traceback
            traceback.print_exc()
    rep.table("xLSTM-7B prefill, B=1, bf16 (floor 38 / 152 ms at S = 2048 / 8192)",
              ["S", "implementation", "ms", "tokens/s", "peak extra GiB"], sorted(rows, key=lambda r: r[0]))
    out = os.environ.get("OUT", ".")
    with open(os.path.join(out, "prefill.md"), "w") as f:
        f.write("\n\n".join(rep.parts) + "\n")


def fast(rep, model, ids, ref, timed):
    with torch.no_grad():
        compile_blocks(model)
        for S in (8192, 2048):
            tick = time.perf_counter()
            out = model(ids[S]).logits[:, -64:]
            torch.cuda.synchronize()
            rep.add(f"compiled blocks, S={S}: first call {time.perf_counter() - tick:.0f} s; logits of the last 64 "
                    f"positions vs eager: rel {_rel(out, ref[S]):.2e}, max abs {(out - ref[S]).abs().max().item():.3g}, "
                    f"argmax equal {(out.argmax(-1) == ref[S].argmax(-1)).float().mean().item():.3f}")
            timed("compiled blocks, float32 logits of all positions", model, S)
            timed("compiled blocks, last-position logits (logits_to_keep=1)", lambda x: model(x, logits_to_keep=1), S)
        for S in (8192, 2048):  # again, both shapes compiled (the second compile is dynamic in S)
            timed("compiled blocks, last-position logits, timed again", lambda x: model(x, logits_to_keep=1), S)
        from torch._dynamo.utils import counters
        rep.add(f"dynamo: unique graphs {counters['stats']['unique_graphs']}, "
                f"recompiles/limit hits {dict(counters['recompiles'])}")
        fast_rows, fast_top = profile(lambda: model(ids[8192], logits_to_keep=1))

        # greedy generation: eager blocks vs compiled prefill (128-token prompt: prefill is compiled)
        prompt = ids[2048][:, :128]
        g_fast = model.generate(prompt, 16, eos_token_id=None)
        compile_blocks(model, None)
        g_eager = model.generate(prompt, 16, eos_token_id=None)
        rep.add(f"greedy 16 tokens after a 128-token prompt, compiled prefill vs eager: "
                f"{'equal' if torch.equal(g_fast, g_eager) else 'DIFFERENT'}")
        try:
            accuracy(rep, model, ids)
        except Exception:
            import traceback
            traceback.print_exc()

    rep.table("GPU time of one S=8192 prefill, compiled blocks + logits_to_keep=1", ["kernels", "count", "GPU ms"],
              fast_rows)
    rep.table("top kernels, compiled S=8192", ["kernel", "kind", "count", "GPU ms"], fast_top)


def accuracy(rep, model, ids):
    """Is the compiled path's difference bf16 rounding? Each block alone on the same input (eager vs compiled),
    and both whole bf16 models against a float32 copy of the weights (S=2048, last 64 positions)."""
    import copy
    from xlstm_zoo.xlstm import large
    x = model.backbone.embeddings(ids[8192])
    rels = []
    for block in model.backbone.blocks:
        block.compiled = None
        y_ref = block(x)[0]
        block.compiled = "inductor"
        y = block(x)[0]
        rels.append(_rel(y - x, y_ref - x))
        x = y_ref
    rep.add(f"one block, same input, S=8192, compiled vs eager (rel diff of the block's update): "
            f"max {max(rels):.2e}, median {sorted(rels)[16]:.2e}, first {rels[0]:.2e}, last {rels[-1]:.2e}")
    ref32 = copy.deepcopy(model).float()
    large.compile_blocks(ref32, None)
    want = ref32(ids[2048]).logits[:, -64:]
    del ref32
    got = {}
    for backend in (None, "inductor"):
        large.compile_blocks(model, backend)
        got[backend] = model(ids[2048]).logits[:, -64:]
    rep.add(f"S=2048, last 64 logits against the float32 model: eager bf16 rel {_rel(got[None], want):.2e}, "
            f"compiled bf16 rel {_rel(got['inductor'], want):.2e}; argmax agreement with float32: eager "
            f"{(got[None].argmax(-1) == want.argmax(-1)).float().mean().item():.3f}, compiled "
            f"{(got['inductor'].argmax(-1) == want.argmax(-1)).float().mean().item():.3f}")
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
