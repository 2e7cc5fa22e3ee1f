"""How many DHV blocks of C should one program of the gate-projecting decode step update? Times
mlstm_step_projecting_gates at the 7B head per slabs_per_program, 8 layers in one CUDA graph. Run on a GPU:
    python benchmarks/step_gates_probe.py
"""

import torch
from xlstm_zoo.kernels.triton.mlstm_step import mlstm_step_projecting_gates
NH, DQ, DV, D, L = 8, 256, 512, 4096, 8
def timed(fn, reps=20):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        s.record(); fn(); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
    return sorted(ts)[len(ts)//2]
for B in (1, 8, 16):
    layers = []
    for _ in range(L):
        q, k = (torch.randn(B, NH, DQ, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        v = torch.randn(B, NH, DV, device="cuda", dtype=torch.bfloat16)
        x = torch.randn(B, D, device="cuda", dtype=torch.bfloat16)
        w = (torch.randn(NH, D, device="cuda", dtype=torch.bfloat16), torch.randn(NH, device="cuda", dtype=torch.bfloat16),
             torch.randn(NH, D, device="cuda", dtype=torch.bfloat16), torch.randn(NH, device="cuda", dtype=torch.bfloat16))
        c = torch.randn(B, NH, DQ, DV, device="cuda"); n = torch.randn(B, NH, DQ, device="cuda"); m = torch.zeros(B, NH, 1, device="cuda")
        layers.append((q, k, v, x, w, c, n, m))
    row = [f"B={B}"]
    for nb in (None, 1, 2, 4, 8):
        def step():
            for q, k, v, x, w, c, n, m in layers:
                mlstm_step_projecting_gates(q, k, v, x, w, 15.0, c, n, m, c_out=c, slabs_per_program=nb)
        step()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()
        row.append(f"NB={nb}: {timed(g.replay) * 1000 / L:.1f} us")
    print(" | ".join(row), flush=True)
