"""How fast are the 7B decode matrix-vector products, by weight layout (single vs fused) and batch?

Captures all 32 blocks' products of one decode step in a CUDA graph (distinct weights, so nothing is
served from L2) and prints ms per step and the fraction of copy bandwidth. Run on a GPU:
    python benchmarks/gemv_probe.py
"""

import torch

from xlstm_zoo.registry.bench.report import _copy_bandwidth
from xlstm_zoo.registry.bench.models import _ms

D, F, QK, V, NH, L, VOCAB = 4096, 10944, 2048, 4096, 8, 32, 50304
LAYOUTS = {
    "single": [(QK, D), (QK, D), (V, D), (V, D), (NH, D), (NH, D), (D, V), (F, D), (F, D), (D, F)],
    "fused": [(2 * QK + 2 * V, D), (2 * NH, D), (D, V), (2 * F, D), (D, F)],
}


def main() -> None:
    bw = _copy_bandwidth()  # bytes/s
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, copy bandwidth {bw / 1e9:.0f} GB/s")
    print("| layout | B | products/step | GB/step | ms/step (graph) | fraction of copy bandwidth |")
    print("|---|---|---|---|---|---|")
    for name, shapes in LAYOUTS.items():
        weights = [torch.randn(s, device="cuda", dtype=torch.bfloat16) for _ in range(L) for s in shapes]
        weights.append(torch.randn(VOCAB, D, device="cuda", dtype=torch.bfloat16))
        nbytes = sum(w.numel() * 2 for w in weights)
        for B in (1, 8):
            xs = {w.shape[1]: torch.randn(B, w.shape[1], device="cuda", dtype=torch.bfloat16) for w in weights}

            def step():
                for w in weights:
                    torch.nn.functional.linear(xs[w.shape[1]], w)

            step()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            ms = _ms(graph.replay, reps=20)
            print(f"| {name} | {B} | {len(weights)} | {nbytes / 1e9:.2f} | {ms:.3f} | {nbytes / (ms / 1e3) / bw:.2f} |")
        del weights


if __name__ == "__main__":
    main()
