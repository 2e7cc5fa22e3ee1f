"""`xlstm-zoo bench kernels [--only check,gates,chunkwise,step,slstm] [--quick]`: our kernels against their peers.

`kernels` checks our Triton kernels in bf16 at real sizes against float64 (native forms upcast), then times
them beside the peers that are installed (mlstm_kernels TFLA, torch SDPA flash attention, FlashRNN) at the
shapes of performance.md. Medians of triton.testing.do_bench (CUDA events); peers and ours in one run. The
tables are printed and written, with the GPU and software versions, to a markdown file under --out.
"""

from __future__ import annotations

import contextlib
import math
import os

from .report import Report, _bench, _copy_bandwidth, _rel, _versions, _write

BF16 = None  # torch.bfloat16, set once torch is imported (keeps `xlstm-zoo --help` free of torch)


# ---------------------------------------------------------------------------------------------------------
# peers (each returns None when its package is missing)


def _tfla(name: str, chunk: int):
    """mlstm_kernels kernel; its TFLA intra-chunk forward needs LLVM optimisation off on triton 3.6."""
    try:
        from mlstm_kernels.torch import get_mlstm_kernel
        from triton.runtime.jit import JITFunction
    except ImportError:
        return None
    if not getattr(JITFunction, "_zoo_patched", False):
        orig = JITFunction.run

        def run(self, *args, **kwargs):
            if getattr(getattr(self, "fn", None), "__name__", "") != "mlstm_chunkwise__parallel_fw_Hintra_kernel":
                return orig(self, *args, **kwargs)
            os.environ["DISABLE_LLVM_OPT"] = "1"
            try:
                return orig(self, *args, **kwargs)
            finally:
                os.environ.pop("DISABLE_LLVM_OPT", None)

        JITFunction.run, JITFunction._zoo_patched = run, True
    kernel = get_mlstm_kernel(name)
    return lambda q, k, v, i, f: kernel(q=q, k=k, v=v, i=i, f=f, chunk_size=chunk, autocast_kernel_dtype=BF16,
                                        return_last_states=False)


def _sdpa():
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def fn(q, k, v, i, f):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v[..., : q.shape[-1]], is_causal=True)
    return fn


def _flashrnn():
    try:
        import importlib

        import torch
        from flashrnn import flashrnn as frnn
    except ImportError:
        return None
    mod = importlib.import_module("flashrnn.flashrnn.flashrnn")

    def gpu_info(device_id):  # its own helper extension does not build with CUDA 13
        p = torch.cuda.get_device_properties(device_id)
        return {"maxThreadsPerBlock": p.max_threads_per_block, "regsPerMultiprocessor": p.regs_per_multiprocessor,
                "multiProcessorCount": p.multi_processor_count,
                "sharedMemPerBlockOptin": p.shared_memory_per_block_optin}

    mod.get_gpu_info = gpu_info

    def fn(wx, r_gate_major, b_gate_major):
        return frnn(wx, r_gate_major, b_gate_major, function="slstm", backend="cuda_fused", dtype="bfloat16")[0][0]
    return fn


# ---------------------------------------------------------------------------------------------------------
# kernels: checks


def _mlstm_inputs(B, NH, S, DQ, DV, dtype, seed):
    import torch
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k = (torch.randn(B, NH, S, DQ, device="cuda", generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, NH, S, DV, device="cuda", generator=g, dtype=dtype)
    i = torch.randn(B, NH, S, device="cuda", generator=g, dtype=dtype)
    f = 3.0 + torch.randn(B, NH, S, device="cuda", generator=g, dtype=dtype)
    return q, k, v, i, f


def check_kernels(rep: Report):
    """bf16 at real head sizes against the native forms in float64 (themselves tested against the recurrence)."""
    import torch

    from ...kernels import mlstm_native, slstm_native
    from ...kernels.triton import mlstm_chunkwise, mlstm_step, slstm

    rows = []
    B, NH, S, DQ, DV = 2, 8, 1000, 256, 512  # S not a multiple of the chunk
    ins = _mlstm_inputs(B, NH, S, DQ, DV, BF16, 0)
    g = torch.Generator(device="cuda").manual_seed(1)
    init = (torch.randn(B, NH, DQ, DV, device="cuda", generator=g) * 0.1,
            torch.rand(B, NH, DQ, device="cuda", generator=g), torch.randn(B, NH, 1, device="cuda", generator=g))
    wts = [torch.randn(B, NH, S, DV, device="cuda", generator=g, dtype=torch.float64),
           torch.randn(B, NH, DQ, DV, device="cuda", generator=g, dtype=torch.float64)]
    outs = {}
    for name, fn, cast, L in (("triton", mlstm_chunkwise.mlstm_chunkwise, lambda x: x, 256),
                              ("float64", mlstm_native.mlstm_chunkwise, lambda x: x.double(), 64)):
        xs = [cast(x).detach().requires_grad_() for x in ins + init]
        h, (c, n, m) = fn(*xs[:5], c_initial=xs[5], n_initial=xs[6], m_initial=xs[7], return_last_states=True,
                          chunk_size=L)
        ((h.double() * wts[0]).sum() + (c.double() * m.double().exp()[..., None] * wts[1]).sum()).backward()
        outs[name] = [h, c * m.exp()[..., None], n * m.exp()] + [x.grad for x in xs[:7]]
    names = ["h", "c", "n", "dq", "dk", "dv", "di", "df", "dc0", "dn0"]
    rows.append(["mLSTM chunkwise (L=256), B=2 NH=8 S=1000 DHQK=256 DHV=512"]
                + [", ".join(f"{n} {_rel(a, b):.1e}" for n, a, b in zip(names, outs["triton"], outs["float64"]))])

    q, k, v, i, f = (x[:, :, 0] for x in _mlstm_inputs(16, 8, 1, DQ, DV, BF16, 2))
    c, n, m = init[0].repeat(8, 1, 1, 1), init[1].repeat(8, 1, 1), init[2].repeat(8, 1, 1)
    got = mlstm_step.mlstm_step(q, k, v, i[..., None], f[..., None], c, n, m)
    ref = mlstm_native.mlstm_step(*(x.double() for x in (q, k, v, i[..., None], f[..., None], c, n, m)))
    rows.append(["mLSTM step, B=16 NH=8 DHQK=256 DHV=512", f"h {_rel(got[0], ref[0]):.1e}, c {_rel(got[1][0], ref[1][0]):.1e}"])
    qs, ks, vs, is_, fs = _mlstm_inputs(2, 8, 24, DQ, DV, BF16, 3)
    got = mlstm_step.mlstm_sequence(qs, ks, vs, is_, fs, return_last_states=True)
    ref = mlstm_native.mlstm_sequence(*(x.double() for x in (qs, ks, vs, is_, fs)), return_last_states=True)
    rows.append(["mLSTM fused sequence, B=2 S=24", f"h {_rel(got[0], ref[0]):.1e}, c {_rel(got[1][0], ref[1][0]):.1e}"])

    B, S, NH, DH = 16, 256, 4, 192
    wx = torch.randn(B, S, 4, NH, DH, device="cuda", generator=g).to(BF16)
    r = (torch.randn(NH, DH, 4, DH, device="cuda", generator=g) / math.sqrt(DH)).to(BF16)
    b = torch.randn(NH, 4, DH, device="cuda", generator=g)
    dy = torch.randn(B, S, NH, DH, device="cuda", generator=g, dtype=torch.float64)
    outs = {}
    for name, fn, cast in (("triton", slstm.slstm_sequence, lambda x: x), ("float64", slstm_native.slstm_sequence,
                                                                          lambda x: x.double())):
        xs = [cast(x).detach().requires_grad_() for x in (wx, r, b)]
        y = fn(*xs)
        (y.double() * dy).sum().backward()
        outs[name] = [y] + [x.grad for x in xs]
    rows.append([f"sLSTM, B={B} S={S} NH={NH} DH={DH}", ", ".join(
        f"{n} {_rel(a, b_):.1e}" for n, a, b_ in zip(["y", "dwx", "dr", "db"], outs["triton"], outs["float64"]))])
    rep.table("bf16 correctness: relative error against float64 (NaN = non-finite output)", ["kernel", "errors"], rows)


GATE_CASES = [  # label, B, NH, S, DHQK, DHV, i scale, f shift, f scale (issue 12)
    ("ordinary gates: i ~ N(0,1), f ~ N(0,1) + 3", 2, 4, 1024, 96, 192, 1.0, 3.0, 1.0),
    ("strong gates: i ~ 10 N(0,1), f ~ 10 N(0,1) + 5", 1, 4, 4096, 96, 192, 10.0, 5.0, 10.0)]


def gate_case_inputs(B, NH, S, DQ, DV, i_scale, f_shift, f_scale):
    """q, k, v, i, f rounded to bf16 and the loss weights w = dh (bf16 values too: the bf16 kernel gets dh in
    bf16), drawn on the CPU so that any machine has the same numbers (the CPU analysis of issue 12 uses them)."""
    import torch
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, NH, S, DQ, generator=g) for _ in range(2))
    v = torch.randn(B, NH, S, DV, generator=g)
    i = i_scale * torch.randn(B, NH, S, generator=g)
    f = f_shift + f_scale * torch.randn(B, NH, S, generator=g)
    w = torch.randn(B, NH, S, DV, generator=g)
    return [x.to(torch.bfloat16) for x in (q, k, v, i, f)], w.to(torch.bfloat16).double()


def parallel_grads(xs, w):
    """h and the gradients of sum(h w) w.r.t. q, k, v, i, f: the float64 quadratic form."""
    from ...kernels import mlstm_native
    xs = [x.double().detach().requires_grad_() for x in xs]
    h = mlstm_native.mlstm_parallel(*xs)
    (h * w).sum().backward()
    return [h.detach()] + [x.grad for x in xs]


def perturbed(xs, u: float, seed: int = 1):
    """The inputs times (1 + u r), r uniform in [-1, 1]: rounding errors of unit u on every input."""
    import torch
    g = torch.Generator().manual_seed(seed)
    return [x.double() * (1 + u * (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1)).to(x.device)
            for x in xs]


def check_gate_gradients(rep: Report):
    """The gate gradients of the chunkwise kernel (issue 12): inputs rounded to bf16, the reference in float64
    on the same rounded inputs (the quadratic parallel form), ordinary and strong gates. Beside the kernels, the
    perturbation floor: the float64 reference itself on inputs perturbed by rounding errors of unit 2^-24 (fp32)
    or 2^-8 (bf16), i.e. what a backward-stable algorithm of that precision may be off by; where it is far above
    2e-2 only the float32 parts of the kernel (normaliser, gate exponents, gate-gradient sums) keep it there."""
    import torch

    from ...kernels.triton import mlstm_chunkwise
    rows = []
    for label, B, NH, S, DQ, DV, *gates in GATE_CASES:
        ins, w = gate_case_inputs(B, NH, S, DQ, DV, *gates)
        ins, w = [x.cuda() for x in ins], w.cuda()
        ref = parallel_grads(ins, w)
        results = {}
        for name, cast, L in (("bf16 L=64", lambda x: x, 64), ("bf16 L=256", lambda x: x, 256),
                              ("fp32 L=256", torch.Tensor.float, 256)):
            xs = [cast(x).detach().requires_grad_() for x in ins]
            h = mlstm_chunkwise.mlstm_chunkwise(*xs, chunk_size=L)
            (h.double() * w).sum().backward()
            results[name] = [h] + [x.grad for x in xs]
            del xs, h
        for name, u in (("floor fp32: float64 on inputs x (1 + 2^-24 r)", 2.0**-24),
                        ("floor bf16: float64 on inputs x (1 + 2^-8 r)", 2.0**-8)):
            results[name] = parallel_grads(perturbed(ins, u), w)
        for name, got in results.items():
            rows.append([label, f"B={B} NH={NH} S={S} DHQK={DQ} DHV={DV}", name] +
                        [f"{_rel(a, b):.2e}" for a, b in zip(got, ref)])
        del ref, results
        torch.cuda.empty_cache()
    rep.table("chunkwise gradients against float64 on the same bf16 inputs (relative Frobenius error; target: "
              "df within 2e-2; floor rows: the reference's own movement under input rounding, r uniform in [-1, 1])",
              ["gates", "shape", "kernel", "h", "dq", "dk", "dv", "di", "df"], rows)


# ---------------------------------------------------------------------------------------------------------
# kernels: timings


def bench_chunkwise(rep: Report, quick: bool):
    import torch

    from ...kernels.triton.mlstm_chunkwise import mlstm_chunkwise

    def ours(L):
        return lambda q, k, v, i, f: mlstm_chunkwise(q, k, v, i, f, chunk_size=L)

    impls = {"zoo triton (L=256)": ours(256), "zoo triton (L=128)": ours(128),
             "mlstm_kernels triton_xl_chunk (L=128)": _tfla("chunkwise--triton_xl_chunk", 128),
             "mlstm_kernels triton_limit_chunk (L=64)": _tfla("chunkwise--triton_limit_chunk", 64),
             "torch SDPA flash, causal, D=256": _sdpa()}
    impls = {k: v for k, v in impls.items() if v is not None}
    shapes = [("7B head", 8, 256, 512, 65536 // S, S) for S in ((8192,) if quick else (2048, 8192, 32768))]
    shapes.append(("125M head", 4, 384, 384, 16, 2048))
    rows = []
    for label, NH, DQ, DV, B, S in shapes:
        base = {}
        for name, fn in impls.items():
            q, k, v, i, f = _mlstm_inputs(B, NH, S, DQ, DV, BF16, 0)
            try:
                with torch.no_grad():
                    fw = _bench(lambda: fn(q, k, v, i, f))
                xs = [x.requires_grad_() for x in (q, k, v, i, f)]
                dh = torch.randn_like(fn(*xs))
                fb = _bench(lambda: fn(*xs).backward(dh), grad_to_none=xs)
            except Exception as e:  # a peer that fails at a shape is reported, not fatal
                rows.append([label, S, B, name, f"error: {type(e).__name__}: {str(e)[:80]}", "", "", ""])
                continue
            finally:
                torch.cuda.empty_cache()
            if "triton_xl_chunk" in name:
                base = {"fw": fw, "fb": fb}
            rows.append([label, S, B, name, fw, fb, "", ""])
        for r in rows:
            if r[0] == label and r[1] == S and base and isinstance(r[4], float):
                r[6], r[7] = base["fw"] / r[4], base["fb"] / r[5]
    rep.table("mLSTM chunkwise, bf16 (ms, median)",
              ["shape", "S", "B", "implementation", "fwd ms", "fwd+bwd ms", "speed-up fwd vs TFLA",
               "speed-up fwd+bwd vs TFLA"], rows)


def bench_step(rep: Report):
    import torch
    import triton.testing

    from ...kernels.triton.mlstm_step import mlstm_step
    impls = {"zoo triton step": mlstm_step}
    with contextlib.suppress(ImportError):
        from mlstm_kernels.torch import get_mlstm_step_kernel
        mk = get_mlstm_step_kernel("triton")
        impls["mlstm_kernels triton step"] = lambda q, k, v, i, f, c, n, m: mk(
            q=q, k=k, v=v, i=i, f=f, c=c, n=n, m=m, eps=1e-6, dtype_state=torch.float32)
    bw = _copy_bandwidth()
    rows = []
    NH, DQ, DV = 8, 256, 512
    for B in (1, 16):
        floor_us = 2 * B * NH * (DQ * DV + DQ + 1) * 4 / bw * 1e6
        for name, fn in impls.items():
            q, k, v, i, f = (x[:, :, 0] for x in _mlstm_inputs(B, NH, 1, DQ, DV, BF16, 1))
            c = torch.randn(B, NH, DQ, DV, device="cuda")
            n = torch.rand(B, NH, DQ, device="cuda")
            m = torch.randn(B, NH, 1, device="cuda")
            args = (q, k, v, i[..., None], f[..., None], c, n, m)
            with torch.no_grad():
                us = _bench(lambda: fn(*args)) * 1e3
                usg = float(triton.testing.do_bench_cudagraph(lambda: fn(*args), rep=100, return_mode="median")) * 1e3
            rows.append([B, name, us, usg, floor_us, usg / floor_us])
    rep.table(f"mLSTM step, 7B head (NH=8, DHQK=256, DHV=512), bf16 q/k/v, fp32 state; measured copy "
              f"bandwidth {bw / 1e12:.2f} TB/s", ["B", "implementation", "us (eager)", "us (CUDA graph)",
                                                   "floor us (state read+write)", "graph / floor"], rows)


def bench_slstm(rep: Report, quick: bool):
    import torch

    from ...kernels.triton.slstm import slstm_sequence
    B, NH, DH = 16, 4, 192
    frnn = _flashrnn()
    rows = []
    for S in ((2048,) if quick else (512, 2048)):
        g = torch.Generator(device="cuda").manual_seed(0)
        wx = torch.randn(B, S, 4, NH, DH, device="cuda", generator=g).to(BF16)
        r = (torch.randn(NH, DH, 4, DH, device="cuda", generator=g) / math.sqrt(DH)).to(BF16)
        b = 0.1 * torch.randn(NH, 4, DH, device="cuda", generator=g)
        impls = {"zoo triton": (slstm_sequence, (wx, r, b))}
        if frnn is not None:  # FlashRNN layouts: R (4, NH, D, D) gate-major, bias (4, NH, D)
            impls["FlashRNN cuda_fused"] = (frnn, (wx, r.permute(2, 0, 1, 3).contiguous(),
                                                   b.transpose(0, 1).contiguous().to(BF16)))
        base = {}
        for name, (fn, args) in impls.items():
            try:
                with torch.no_grad():
                    fw = _bench(lambda: fn(*args))
                xs = [x.detach().requires_grad_() for x in args]
                dy = torch.randn_like(fn(*xs))
                fb = _bench(lambda: fn(*xs).backward(dy), grad_to_none=xs)
            except Exception as e:
                rows.append([S, name, f"error: {type(e).__name__}: {str(e)[:100]}", "", "", ""])
                continue
            if name.startswith("FlashRNN"):
                base = {"fw": fw, "fb": fb}
            rows.append([S, name, fw, fb, "", ""])
        for row in rows:
            if row[0] == S and base and isinstance(row[2], float):
                row[4], row[5] = row[2] / base["fw"], row[3] / base["fb"]
    rep.table(f"sLSTM cell, B={B}, {NH} heads x {DH}, bf16 (ms, median)",
              ["S", "implementation", "fwd ms", "fwd+bwd ms", "fwd / FlashRNN", "fwd+bwd / FlashRNN"], rows)


def kernels(args) -> int:
    global BF16
    import torch
    if not torch.cuda.is_available():
        print("bench kernels needs a CUDA GPU")
        return 2
    BF16 = torch.bfloat16
    rep = Report()
    rep.add(f"## xlstm-zoo bench kernels\n\n{_versions()}")
    only = set(args.only.split(","))
    steps = {"check": lambda: check_kernels(rep), "gates": lambda: check_gate_gradients(rep), "chunkwise": lambda: bench_chunkwise(rep, args.quick),
             "step": lambda: bench_step(rep), "slstm": lambda: bench_slstm(rep, args.quick)}
    for name, run in steps.items():
        if name in only:
            run()
            torch.cuda.empty_cache()
    _write(rep, "kernels", args.out)
    return 0
