"""sLSTM Triton kernel on the GPU: correctness of the split (barrier) path, timings against the previous kernel
and FlashRNN, in one process. Usage: python3 run_slstm_gpu.py {check,time,ncu} (run.sh runs all three)."""
import json, math, os, sys, time
import torch

sys.path.insert(0, os.path.dirname(__file__))
from xlstm_zoo.kernels import slstm_native
from xlstm_zoo.kernels.triton import slstm
from xlstm_zoo.registry.bench.kernels import _bench, _flashrnn, _rel
import kernel_before

OUT = os.environ.get("OUT", "/tmp")
dev = "cuda"


def inputs(B, S, NH, DH, dtype, seed, init=False):
    g = torch.Generator(device=dev).manual_seed(seed)
    wx = torch.randn(B, S, 4, NH, DH, device=dev, generator=g).to(dtype)
    r = (torch.randn(NH, DH, 4, DH, device=dev, generator=g) / math.sqrt(DH)).to(dtype)
    b = 0.1 * torch.randn(NH, 4, DH, device=dev, generator=g)
    st = [torch.randn(B, NH, DH, device=dev, generator=g) for _ in range(4)] if init else None
    if init:
        st[1] = st[1].abs() + 0.5
    dy = torch.randn(B, S, NH, DH, device=dev, generator=g, dtype=torch.float64)
    return wx, r, b, st, dy


def grads(fn, wx, r, b, st, dy, cast):
    xs = [cast(x).detach().requires_grad_() for x in (wx, r, b)] + (
        [cast(x).detach().requires_grad_() for x in st] if st else [])
    kw = dict(zip(("c_initial", "n_initial", "h_initial", "m_initial"), xs[3:])) if st else {}
    y, (c, n, h, m) = fn(*xs[:3], return_last_states=True, **kw)
    ((y.double() * dy).sum() + (h.double() * dy[:, -1]).sum()).backward()
    return [y, c * torch.exp(m), h] + [x.grad for x in xs]


NAMES = ["y", "c", "h", "dwx", "dr", "db", "dc0", "dn0", "dh0", "dm0"]


def check():
    rows = []
    cases = [("fp32 split U=16 resident", dict(U=16), (3, 64, 2, 64), torch.float32, True),
             ("fp32 split U=16 DH=48 masked", dict(U=16), (2, 40, 3, 48), torch.float32, True),
             ("fp32 split U=32 streamed", dict(U=32, resident=False), (17, 33, 2, 96), torch.float32, True),
             ("fp32 one program per head", dict(U=64, resident=False), (2, 30, 2, 64), torch.float32, True),
             ("bf16 default plan 16x256x4x192", None, (16, 256, 4, 192), torch.bfloat16, False)]
    for rep in range(2):
        for name, force, shape, dt, init in cases:
            wx, r, b, st, dy = inputs(*shape, dt, seed=10 * rep + len(rows), init=init)
            ref = grads(slstm_native.slstm_sequence, wx, r, b, st, dy, lambda x: x.double())
            slstm._FORCE = force
            p = slstm._plan(shape[0], shape[2], shape[3], dt, torch.device(dev))
            t = time.time()
            got = grads(slstm.slstm_sequence, wx, r, b, st, dy, lambda x: x)
            torch.cuda.synchronize()
            slstm._FORCE = None
            errs = {n: _rel(a, b_) for n, a, b_ in zip(NAMES, got, ref)}
            row = {"case": name, "rep": rep, "grid": p["grid"], "resident": p["resident"],
                   "s": round(time.time() - t, 2), **{k: f"{v:.1e}" for k, v in errs.items()}}
            if dt == torch.bfloat16:
                old = grads(kernel_before.slstm_sequence, wx, r, b, st, dy, lambda x: x)
                row["before"] = {n: f"{_rel(a, b_):.1e}" for n, a, b_ in zip(NAMES, old, ref)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    json.dump(rows, open(f"{OUT}/check.json", "w"), indent=1)


VARIANTS = {  # name: (plan override, forward warps, backward warps)
    "U=16 (grid 48), 4/4 warps": ({"U": 16}, 4, 4),
    "U=16 (grid 48), 4/8 warps": ({"U": 16}, 4, 8),
}
EXTRA = ("kernel_prev",)  # other kernel versions to time, when their file is there (not kept in the tree)


def timing(variants=VARIANTS, peers=True):
    B, S, NH, DH = 16, 2048, 4, 192
    wx, r, b, _, _ = inputs(B, S, NH, DH, torch.bfloat16, 0)
    res = []

    def run(name, fn, args, setup=lambda: None):
        setup()
        with torch.no_grad():
            fw = _bench(lambda: fn(*args))
        xs = [x.detach().requires_grad_() for x in args]
        dy = torch.randn_like(fn(*xs))
        fb = _bench(lambda: fn(*xs).backward(dy), grad_to_none=xs)
        res.append({"impl": name, "fwd_ms": fw, "fwdbwd_ms": fb})
        print(json.dumps(res[-1]), flush=True)

    def plan(force, fw_warps, bw_warps):
        slstm._FORCE = force
        slstm._TUNE.update(fw_warps=fw_warps, bw_warps=bw_warps)

    run("before (atomic barrier, U=16, 4 warps)", kernel_before.slstm_sequence, (wx, r, b))
    for mod in EXTRA:
        if os.path.exists(os.path.join(os.path.dirname(__file__), mod + ".py")):
            run(mod, __import__(mod).slstm_sequence, (wx, r, b))
    for name, args in variants.items():
        run(name, slstm.slstm_sequence, (wx, r, b), lambda a=args: plan(*a))
    run("default plan, again", slstm.slstm_sequence, (wx, r, b), lambda: plan(None, 4, 4))
    # the backward's PyTorch work around the kernel, at these shapes
    draw = torch.randn(B, S, 4, NH, DH, device=dev, dtype=torch.bfloat16)
    hx = torch.randn(B, S + 1, NH, DH, device=dev, dtype=torch.bfloat16)

    def dr_full():  # all head pairs in one GEMM (4x the FLOPs), then the diagonal blocks
        full = hx[:, :S].reshape(B * S, NH * DH).t() @ draw.view(B * S, 4 * NH * DH)
        return full.view(NH, DH, 4, NH, DH).diagonal(dim1=0, dim2=3).permute(3, 0, 1, 2)

    ref = torch.einsum("bshd,bsghe->hdge", hx[:, :S].float(), draw.float())
    print("dr one GEMM: rel err vs fp32 einsum", _rel(dr_full(), ref))
    for name, fn in {"zeros_like(draw)": lambda: torch.zeros_like(draw),
                     "einsum dr": lambda: torch.einsum("bshd,bsghe->hdge", hx[:, :S], draw),
                     "dr one GEMM + diagonal": dr_full,
                     "draw.sum": lambda: draw.sum((0, 1), dtype=torch.float32)}.items():
        res.append({"impl": name, "ms": _bench(fn)})
        print(json.dumps(res[-1]), flush=True)
    frnn = _flashrnn() if peers else None
    if frnn is not None:
        try:
            run("FlashRNN cuda_fused", frnn, (wx, r.permute(2, 0, 1, 3).contiguous(),
                                              b.transpose(0, 1).contiguous().to(torch.bfloat16)))
        except Exception as e:
            print("flashrnn failed", type(e).__name__, str(e)[:300])
    json.dump(res, open(f"{OUT}/timing.json", "w"), indent=1)


def ncu():
    wx, r, b, _, _ = inputs(16, 512, 4, 192, torch.bfloat16, 0)
    for fn in (kernel_before.slstm_sequence, slstm.slstm_sequence):
        xs = [x.detach().requires_grad_() for x in (wx, r, b)]
        y = fn(*xs)
        y.float().sum().backward()
    torch.cuda.synchronize()


if __name__ == "__main__":
    {"check": check, "time": timing, "tune": lambda: timing(peers=False), "ncu": ncu}[sys.argv[1]]()
