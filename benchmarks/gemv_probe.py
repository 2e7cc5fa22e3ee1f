"""How fast are the 7B decode matrix-vector products, by weight layout (single vs fused) and batch, and
with weight-only quantized weights (the zoo's Triton matvec kernels against cuBLAS bf16)?

Captures all 32 blocks' products of one decode step in a CUDA graph (distinct weights, so nothing is
served from L2) and prints ms per step and the fraction of copy bandwidth (bytes of the weights as
stored). The quantized table also checks each kernel against the product with its dequantized weight.
Run on a GPU:
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


def _graph_ms(step) -> float:
    step()  # compiles and tunes (Triton autotune) outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return _ms(graph.replay, reps=20)


def quantized(bw: float) -> None:
    """The fused layout's products (the gate projection aside: the step kernel reads it), B=1 and 8: bf16
    (cuBLAS) against the zoo's int8 / int4 layers."""
    from xlstm_zoo.xlstm.quantized import WeightOnlyLinear
    shapes = [s for s in LAYOUTS["fused"] if s != (2 * NH, D)]
    print("| weights | B | GB/step | ms/step (graph) | fraction of copy bandwidth | max rel. error vs dequantized |")
    print("|---|---|---|---|---|---|")
    for bits in (16, 8, 4):
        def make(n, k):
            lin = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
            return lin if bits == 16 else WeightOnlyLinear(lin, bits)
        layers = [make(n, k) for _ in range(L) for n, k in shapes] + [make(VOCAB, D)]
        nbytes = sum(p.numel() * p.element_size() for m in layers for p in m.parameters())
        err = 0.0
        for B in (1, 8):
            xs = {m.in_features: torch.randn(B, m.in_features, device="cuda", dtype=torch.bfloat16) for m in layers}
            with torch.no_grad():
                ms = _graph_ms(lambda: [m(xs[m.in_features]) for m in layers])
                for m in layers[:len(shapes)] + layers[-1:] if bits != 16 else []:
                    x = xs[m.in_features]
                    ref = x.double() @ m.weight_dequantized().double().T
                    err = max(err, float((m(x).double() - ref).norm() / ref.norm()))
            print(f"| {'bf16 (cuBLAS)' if bits == 16 else f'int{bits} (zoo)'} | {B} | {nbytes / 1e9:.2f} | {ms:.3f} | "
                  f"{nbytes / (ms / 1e3) / bw:.2f} | {err:.1e} |", flush=True)
        del layers


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

            ms = _graph_ms(step)
            print(f"| {name} | {B} | {len(weights)} | {nbytes / 1e9:.2f} | {ms:.3f} | {nbytes / (ms / 1e3) / bw:.2f} |")
        del weights
    quantized(bw)


if __name__ == "__main__":
    main()
