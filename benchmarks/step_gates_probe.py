"""How many DHV blocks of C should one program of the gate-projecting decode step update? Times
mlstm_step_projecting_gates at the 7B head per slabs_per_program, 8 layers in one CUDA graph. Run on a GPU:
    python benchmarks/step_gates_probe.py
"""

import torch

from xlstm_zoo.kernels.triton.mlstm_step import mlstm_step_projecting_gates
from xlstm_zoo.registry.bench.models import _ms

NH, DQ, DV, D, LAYERS = 8, 256, 512, 4096, 8


def layer(B: int):
    bf16 = dict(device="cuda", dtype=torch.bfloat16)
    q, k, v = torch.randn(B, NH, DQ, **bf16), torch.randn(B, NH, DQ, **bf16), torch.randn(B, NH, DV, **bf16)
    gates = (torch.randn(NH, D, **bf16), torch.randn(NH, **bf16), torch.randn(NH, D, **bf16), torch.randn(NH, **bf16))
    state = (torch.randn(B, NH, DQ, DV, device="cuda"), torch.randn(B, NH, DQ, device="cuda"),
             torch.zeros(B, NH, 1, device="cuda"))
    return q, k, v, torch.randn(B, D, **bf16), gates, state


def main() -> None:
    for B in (1, 8, 16):
        layers = [layer(B) for _ in range(LAYERS)]
        row = [f"B={B}"]
        for nb in (None, 1, 2, 4, 8):
            def step():
                for q, k, v, x, gates, (c, n, m) in layers:
                    mlstm_step_projecting_gates(q, k, v, x, gates, 15.0, c, n, m, c_out=c, slabs_per_program=nb)
            step()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            row.append(f"NB={nb}: {_ms(graph.replay, reps=20) * 1000 / LAYERS:.1f} us")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
