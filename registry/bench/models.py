"""Whole-model GPU benchmarks: `xlstm-zoo bench generate | prefill | train`.

generate / prefill: xLSTM-7B with random weights in bf16 (performance.md section 2); train: zoo entries
(default the paper's 125M and 350M), 16 x 2048 tokens per GPU, bf16, wrapped by the training pipeline
(plain, DDP, FSDP2; eager or compiled; with or without activation checkpointing), also under torchrun
(tokens/s summed over ranks). Peers are columns/rows when their package is importable: NX-AI xlstm's
xLSTMLarge (Triton kernels) and transformers' Llama. Wall times are
CUDA-event medians after warm-up; floors use the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from .report import Report, _bench, _copy_bandwidth, _ms, _rel

SEVEN_B = dict(embedding_dim=4096, num_heads=8, num_blocks=32, vocab_size=50304)


def _zoo_7b(quantize=None, backend="torchao"):
    """The 7B with random weights, the same ones on every call (so quantized copies compare to bf16)."""
    import torch

    from ..builder import build_model
    torch.manual_seed(0)
    return build_model("xlstm-7b", device="cuda", dtype=torch.bfloat16, quantize=quantize,
                       quantize_backend=backend).eval()


def _peer_7b():
    """NX-AI xlstm's xLSTMLarge with mlstm_kernels' Triton kernels, as the anchors ran it (None if absent)."""
    import torch
    try:
        from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig
    except ImportError:
        return None
    from .kernels import _tfla
    _tfla("chunkwise--triton_xl_chunk", 128)  # installs the triton 3.6 compile workaround
    cfg = xLSTMLargeConfig(**SEVEN_B, mode="inference", return_last_states=True, chunk_size=128,
                           chunkwise_kernel="chunkwise--triton_xl_chunk", sequence_kernel="native_sequence__triton",
                           step_kernel="triton")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            return xLSTMLarge(cfg).eval()
    finally:
        torch.set_default_dtype(old)


def _free(*_):
    import gc

    import torch
    gc.collect()
    torch.cuda.empty_cache()


def _decode_floor_ms(model, batch: int, bandwidth: float) -> float:
    """Weights read once (embedding excluded) plus the fp32 state read and written, at copy bandwidth."""
    embed = model.backbone.embeddings.weight
    weights = _weight_bytes(model) - embed.numel() * embed.element_size()
    return (weights + 2 * batch * _state_bytes(model)) / bandwidth * 1e3


def _weight_bytes(model) -> int:
    from ..quantize import tensor_bytes
    return sum(tensor_bytes(p) for p in model.parameters())


def _state_bytes(model) -> int:
    """One sequence's float32 mLSTM state (C, n, m of every block)."""
    cfg = model.config
    dq, dv = cfg.qk_dim // cfg.num_heads, cfg.v_dim // cfg.num_heads
    return cfg.num_blocks * cfg.num_heads * (dq * dv + dq + 1) * 4


def kernel_times(step: Callable, reps: int = 5) -> dict:
    """GPU time of each kernel `step` launches, from CUPTI: {kernel name: (launches, ms)} per step."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    times: dict = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            count, us = times.get(ev.name, (0, 0.0))
            times[ev.name] = (count + 1, us + ev.time_range.elapsed_us())
    return {name: (count / reps, us / reps / 1e3) for name, (count, us) in times.items()}


def by_kind(times: dict, kind: Callable[[str], str]) -> list:
    """Rows [kind, launches, ms], largest first, then the total."""
    kinds: dict = {}
    for name, (count, ms) in times.items():
        c, t = kinds.get(kind(name), (0, 0.0))
        kinds[kind(name)] = (c + count, t + ms)
    rows = [[k, c, t] for k, (c, t) in sorted(kinds.items(), key=lambda kv: -kv[1][1])]
    return rows + [["all", sum(r[1] for r in rows), sum(r[2] for r in rows)]]


def _decode_kind(name: str) -> str:
    name = name.lower()
    return ("mLSTM step (Triton)" if "_step_kernel" in name or "_step_gates_kernel" in name else
            "fused pointwise (Triton)" if any(k in name for k in ("rms_norm", "norm_gate", "swiglu", "soft_cap")) else
            "weight-only matvec (zoo, Triton)" if name.startswith(("_int8_", "_int4_")) else
            "int4 matrix products (tinygemm)" if "tinygemm" in name else
            "torch.compile'd (inductor Triton)" if name.startswith("triton_") else
            "matrix products (cuBLAS)" if any(k in name for k in ("gemv", "gemm", "nvjet", "cutlass", "sm90")) else
            "copies" if "memcpy" in name or "copy" in name else "elementwise / norms / reductions")


def _set_pointwise(model, choice: str) -> None:
    for block in model.backbone.blocks:
        block.pointwise = choice


def bench_generate(rep: Report, new_tokens: int):
    """Greedy decode after a 128-token prompt, B=1 and 8: ours by weight layout and pointwise kernels
    (graph replay alone, and whole generate calls for the default), greedy tokens against the eager loop
    of the same variant; the peer."""
    import torch

    from ...xlstm import cuda_graph
    from ...xlstm.large import set_weight_mode
    model = _zoo_7b()
    bw = _copy_bandwidth()
    rows, checks = [], []
    gen = torch.Generator(device="cuda").manual_seed(0)
    variants = [("single weights, PyTorch pointwise", "single", "native"),
                ("single weights, fused pointwise", "single", "auto"),
                ("fused weights, fused pointwise (default)", "fused", "auto")]
    prompts = {batch: torch.randint(0, SEVEN_B["vocab_size"], (batch, 128), device="cuda", generator=gen)
               for batch in (1, 8)}
    for label, weight_mode, pointwise in variants:
        set_weight_mode(model, weight_mode)
        _set_pointwise(model, pointwise)
        for batch, ids in prompts.items():
            floor = _decode_floor_ms(model, batch, bw)
            ref = model.generate(ids, 32, eos_token_id=None, cuda_graph=False)
            if "(default)" in label:  # whole generate calls: prefill, capture (cached after the first), steps
                prefill = _ms(lambda: model(ids, logits_to_keep=1), reps=3)
                for name, kw, n in (("generate, CUDA graph", {}, new_tokens), ("generate, eager", {"cuda_graph": False}, 16)):
                    total = _ms(lambda: model.generate(ids, n, eos_token_id=None, **kw), reps=2)
                    per = (total - prefill) / (n - 1)
                    rows.append([batch, f"zoo {label}: {name}", total, per, batch * 1e3 / per, floor, per / floor])
            with torch.no_grad():
                _, state = model(ids)
            runner = cuda_graph.graph_decoder(model, state.map(torch.clone))  # it takes its state over
            tok = torch.zeros(batch, dtype=torch.long, device="cuda")
            step = _ms(lambda: [runner(tok) for _ in range(20)], reps=3) / 20
            rows.append([batch, f"zoo {label}: graph replay", "", step, batch * 1e3 / step, floor, step / floor])
            # one step from the same state: graph vs eager logits, and eager twice (run-to-run noise)
            with torch.no_grad():  # as generate runs: inference takes the fused kernels
                prefill_logits = model(ids, logits_to_keep=1).logits[:, -1]
                eager = [model(prefill_logits.argmax(-1)[:, None], state).logits[:, -1] for _ in range(2)]
            graph_logits = runner.start(state.map(torch.clone))(prefill_logits.argmax(-1)).clone()
            runner.start(state.map(torch.clone))
            logits, toks = prefill_logits, []
            for _ in range(31):
                toks.append(logits.argmax(-1))
                logits = runner(toks[-1])
            toks.append(logits.argmax(-1))
            same = (torch.stack(toks, 1) == ref[:, 128:]).all(0)
            checks.append([batch, label, _agreement(same),
                           _rel(graph_logits, eager[0]), _rel(eager[1], eager[0])])
            if batch == 1:
                times = kernel_times(lambda: runner(tok))
                rep.table(f"where one B=1 graph step's GPU time goes: {label}", ["kernels", "count/step", "GPU ms/step"],
                          by_kind(times, _decode_kind))
                top = sorted(times.items(), key=lambda kv: -kv[1][1])[:12]
                rep.table(f"top kernels of one B=1 graph step: {label}", ["kernel", "count/step", "GPU ms/step"],
                          [[name[:80], count, ms] for name, (count, ms) in top])
            cuda_graph._RUNNERS.clear()
            rep.add(f"{label}, B={batch}: peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
            torch.cuda.reset_peak_memory_stats()
    del model
    _free()
    peer = _peer_7b()
    if peer is not None:
        for batch in (1, 8):
            ids = torch.randint(0, SEVEN_B["vocab_size"], (batch, 128), device="cuda", generator=gen)
            with torch.no_grad():
                prefill = _ms(lambda: peer(ids), reps=3)
                n = 16
                total = _ms(lambda: peer.generate(prefill_tokens=ids, max_length=n, sampling_type="greedy"), reps=2)
            per = (total - prefill) / (n - 1)
            rows.append([batch, "xlstm xLSTMLarge [triton] (peer)", total, per, batch * 1e3 / per, "", ""])
        del peer
        _free()
    rep.table(f"xLSTM-7B greedy decode, 128-token prompt, bf16 (copy bandwidth {bw / 1e12:.2f} TB/s)",
              ["B", "implementation", "generate ms", "ms/step", "tokens/s", "floor ms/step", "/ floor"], rows)
    rep.table("the graph runner against the eager loop of the same variant: 32 greedy tokens, and one step's logits",
              ["B", "variant", "tokens", "step logits rel, graph vs eager", "eager vs eager"], checks)


def _decode_ms(model, batch: int, steps: int = 20) -> float:
    """ms per greedy decode step replayed from the runner the last generate call left cached."""
    import torch

    from ...xlstm import cuda_graph
    runner = cuda_graph._RUNNERS[model]
    tok = torch.zeros(batch, dtype=torch.long, device="cuda")
    return _ms(lambda: [runner(tok) for _ in range(steps)], reps=3) / steps


def bench_batches(rep: Report, batches, prompt: int = 128):
    """Greedy decode at serving batch sizes: peak memory of a whole generate call (prefill, capture,
    steps) against weights + 1.25 x B x state + 0.3 GiB, and tokens/s of the captured step."""
    import torch

    from ...xlstm import cuda_graph
    model = _zoo_7b()
    weights, state = _weight_bytes(model), _state_bytes(model)
    bw = _copy_bandwidth()
    rows = []
    for B in batches:
        cuda_graph._RUNNERS.clear()
        _free()
        torch.cuda.reset_peak_memory_stats()
        ids = torch.randint(0, SEVEN_B["vocab_size"], (B, prompt), device="cuda")
        try:
            model.generate(ids, 16, eos_token_id=None)
            peak = torch.cuda.max_memory_allocated()
            ms = _decode_ms(model, B)
        except torch.OutOfMemoryError:
            rows.append([B, "out of memory", "", "", "", "", ""])
            continue
        bound = weights + 1.25 * B * state + 0.3 * 2**30
        rows.append([B, ms, B * 1e3 / ms, _decode_floor_ms(model, B, bw), peak / 2**30, bound / 2**30,
                     (peak - weights) / (B * state)])
        print(rows[-1], flush=True)
    cuda_graph._RUNNERS.clear()
    del model
    _free()
    rep.table(f"xLSTM-7B greedy decode by batch size, {prompt}-token prompts, bf16, CUDA graph (weights "
              f"{weights / 2**30:.1f} GiB, state {state / 2**20:.1f} MiB per sequence)",
              ["B", "ms/step", "tokens/s", "floor ms/step", "peak GiB (generate)", "bound GiB", "(peak - weights) / (B x state)"],
              rows)


def bench_quantized(rep: Report, methods, compiled=(), zoo=(), new_tokens: int = 32, batches=()):
    """B=1 greedy decode of the 7B with weight-only quantized projections beside bf16 (same random weights):
    torchao's layers (`methods`; `compiled`: with torch.compile'd projections) and the zoo's (`zoo`, Triton
    matvec kernels). Per variant: ms/step of the captured step, weights, last-position prefill logits and
    greedy tokens against bf16, graph decode against the eager loop; and where the step's GPU time goes.
    `batches`: the captured step's ms at those batch sizes too (the zoo's kernels take up to 16 rows)."""
    import torch

    from ...xlstm import cuda_graph
    from ..quantize import compile_small_batch
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, SEVEN_B["vocab_size"], (1, 128), device="cuda", generator=gen)
    bw = _copy_bandwidth()
    rows, ref, profiles = [], None, []
    variants = [(None, False, "torchao")] + [(m, False, "zoo") for m in zoo]  # compiles last: they take longest
    variants += [(m, False, "torchao") for m in methods] + [(m, True, "torchao") for m in compiled]
    for method, compile_, backend in variants:
        cuda_graph._RUNNERS.clear()
        _free()
        name = (method or "bf16 (default)") + (", torch.compile'd projections" if compile_ else "") + \
            (", zoo Triton matvec" if backend == "zoo" else "")
        try:
            model = _zoo_7b(method, backend)
            if compile_:
                compile_small_batch(model)
            with torch.no_grad():
                logits = model(ids, logits_to_keep=1).logits[:, -1].float()
            eager = model.generate(ids, new_tokens, eos_token_id=None, cuda_graph=False)[:, 128:]
            tokens = model.generate(ids, new_tokens, eos_token_id=None)[:, 128:]
            ms = _decode_ms(model, 1)
            runner, tok = cuda_graph._RUNNERS[model], torch.zeros(1, dtype=torch.long, device="cuda")
            times = kernel_times(lambda: runner(tok))
            batched = []
            for B in batches:
                model.generate(ids.expand(B, -1), 2, eos_token_id=None)
                batched.append(_decode_ms(model, B))
        except Exception as e:  # one failing variant must not cost the others (one GPU run)
            rows.append([name, "failed", "", "", "", f"{type(e).__name__}: {str(e)[:80]}", "", "", *["" for _ in batches]])
            print(rows[-1], flush=True)
            model = runner = None  # its memory goes before the next variant is built
            continue
        if ref is None:
            ref = (logits, tokens)
        same, graph_eager = (tokens == ref[1])[0], (tokens == eager)[0]
        rows.append([name, ms, 1e3 / ms, _decode_floor_ms(model, 1, bw), _weight_bytes(model) / 2**30,
                     f"{_rel(logits, ref[0]):.2e}", _agreement(same), _agreement(graph_eager),
                     *[f"{b_ms:.3f} ({B * 1e3 / b_ms:.0f})" for B, b_ms in zip(batches, batched)]])
        profiles.append((name, by_kind(times, _decode_kind), sorted(times.items(), key=lambda kv: -kv[1][1])[:8]))
        print(rows[-1], *profiles[-1][1], sep="\n  ", flush=True)  # a run cut short keeps what it measured
        del model, runner
    cuda_graph._RUNNERS.clear()
    _free()
    rep.table(f"xLSTM-7B weight-only quantized greedy decode, B=1, 128-token prompt, CUDA graph (copy bandwidth "
              f"{bw / 1e12:.2f} TB/s; targets: int8 <= 2.8 ms/token, int4 <= 1.6)",
              ["weights", "ms/step", "tokens/s", "floor ms/step", "weights GiB", "prefill logits rel. to bf16",
               f"{new_tokens} greedy tokens vs bf16", "graph vs eager tokens",
               *[f"B={B} ms/step (tokens/s)" for B in batches]], rows)
    for name, kinds, top in profiles:
        rep.table(f"where one B=1 graph step's GPU time goes: {name}", ["kernels", "count/step", "GPU ms/step"], kinds)
        rep.table(f"top kernels of one B=1 graph step: {name}", ["kernel", "count/step", "GPU ms/step"],
                  [[k[:80], count, t] for k, (count, t) in top])


def _agreement(same) -> str:
    return "equal" if same.all() else f"equal up to token {int(same.int().argmin())}"


def bench_prefill(rep: Report, lengths=(8192, 32768, 131072, 262144, 524288, 1048576), variants: bool = True):
    """One forward over a 1 x S prompt: ours with every position's logits at three chunk sizes, with the last
    position's only (as generate asks), with PyTorch pointwise ops, and with single weights; the peer. Then
    long prompts (bench_long_prefill)."""
    import torch
    if not variants:
        return bench_long_prefill(rep, lengths)
    rows = []

    def measure(name, fn):
        for S in (2048, 8192):
            ids = torch.randint(0, SEVEN_B["vocab_size"], (1, S), device="cuda")
            _free()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                ms = _ms(lambda: fn(ids), reps=5)
            rows.append([S, name, ms, S / ms * 1e3, (torch.cuda.max_memory_allocated() - base) / 2**30])

    from ...xlstm.large import set_weight_mode
    model = _zoo_7b()
    chunk = model.config.kernels.chunk_size
    for size in (128, 256, chunk):  # the config's size last: the fast paths below run with it
        for block in model.backbone.blocks:
            backend = block.mlstm_layer.backend
            backend.config = backend.config.model_copy(update={"chunk_size": size})
        measure(f"zoo, Triton chunkwise L={size}" + (" (config)" if size == chunk else ""), model)
    # what generate's prefill runs: the last position's logits only; by pointwise kernels and weight layout
    last = lambda ids: model(ids, logits_to_keep=1)  # noqa: E731
    measure("zoo, last-position logits (generate's prefill, default)", last)
    _set_pointwise(model, "native")
    measure("zoo, last-position logits, PyTorch pointwise", last)
    _set_pointwise(model, "auto")
    set_weight_mode(model, "single")
    measure("zoo, last-position logits, single weights (the checkpoint's layout)", last)
    del model
    _free()
    peer = _peer_7b()
    if peer is not None:
        measure("xlstm xLSTMLarge [triton] (peer)", peer)
        del peer
        _free()
    rep.table("xLSTM-7B prefill, B=1, bf16 (floor: 2 x params x S / matmul peak; 38 / 152 ms on an H100)",
              ["S", "implementation", "ms", "tokens/s", "peak extra GiB"], rows)
    bench_long_prefill(rep, lengths)


def bench_long_prefill(rep: Report, lengths):
    """generate's prefill (last-position logits) of 1 x S prompts up to 1M tokens: the forward runs them in
    pieces of kernels.max_inference_chunksize tokens carrying the state, so peak memory stays flat."""
    import torch
    model = _zoo_7b()
    weights = _weight_bytes(model)
    piece = model.config.kernels.max_inference_chunksize
    rows, base = [], None
    for S in lengths:
        ids = torch.randint(0, SEVEN_B["vocab_size"], (1, S), device="cuda")
        _free()
        torch.cuda.reset_peak_memory_stats()
        try:
            with torch.no_grad():  # pieces repeat the shapes of shorter prompts: no warm-up past 32k
                ms = _ms(lambda: model(ids, logits_to_keep=1), reps=3 if S <= 32768 else 1,
                         warmup=1 if S <= 32768 else 0)
        except torch.OutOfMemoryError as e:
            rows.append([S, "out of memory", "", "", "", str(e)[:60]])
            continue
        peak = torch.cuda.max_memory_allocated()
        tps = S / ms * 1e3
        base = base or tps
        rows.append([S, ms, tps, tps / base, peak / 2**30, (peak - weights) / 2**30])
        print(rows[-1], flush=True)
    del model
    _free()
    rep.table(f"xLSTM-7B prefill of long prompts, B=1, bf16, last-position logits, pieces of {piece} tokens "
              f"(weights {weights / 2**30:.1f} GiB; target: peak <= weights + 6 GiB, >= 95% of the first row's "
              "tokens/s)", ["S", "ms", "tokens/s", "/ first row", "peak GiB", "peak - weights GiB"], rows)


TRAIN_MODELS = {"xlstm-large-160m": {"model": {"kind": "xlstm-large-lm", "embedding_dim": 768, "num_heads": 4,
                                              "num_blocks": 12, "vocab_size": 50304, "kernels": {"chunk_size": 128}}}}
"""Training-bench models that are not zoo entries: the ~160M xLSTM Large of performance.md section 3."""
LLAMA_PEERS = {
    "xlstm-large-160m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=2048),
    "xlstm-125m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=2048),
    "xlstm-350m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=2752),
}
"""Llama of the same size as the paper entries (arXiv 2405.04517 Table 7 baselines: 768 wide / 12 blocks /
12 heads, 1024 / 24 / 16; 162M and 407M parameters with the untied 50304-token vocabulary); the 160M xLSTM
Large's peer is the 125M one."""
TRAIN_VARIANTS = tuple(f"{strategy}{compiled}{ac}" for strategy in ("plain", "ddp", "fsdp")
                       for compiled in ("", "+compile") for ac in ("", "+ac"))


def _matmul_tflops() -> float:
    """The bf16 matrix-multiply rate of this GPU, measured (8192^3), for model FLOPs utilisation."""
    import torch
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    return 2 * 8192 ** 3 / (_bench(lambda: a @ a) * 1e-3) / 1e12


def _zoo_variant(entry: str, variant: str, dist):
    """(model, forward) for a zoo entry wrapped as the training pipeline wraps it for `variant`."""
    from ...schemas.recipe import Train
    from ..builder import build_model
    from ..pipelines.distributed import wrap_model
    parts = variant.split("+")
    train = Train(max_steps=1, batch_size=1, precision="bf16", compile="compile" in parts,
                  activation_checkpointing="ac" in parts)
    model = build_model(TRAIN_MODELS.get(entry, entry), device=dist.device,
                        overrides={"model.kernels.mode": "train"} if entry == "xlstm-7b" else None)
    wrapped = wrap_model(model, train, dist)
    return model, (lambda ids: wrapped(ids).logits)


def _llama(entry: str, compile: bool, dist):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(**LLAMA_PEERS[entry], vocab_size=50304, max_position_embeddings=4096,
                      tie_word_embeddings=False)
    with torch.device(dist.device):
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa").float()
    wrapped = torch.compile(model) if compile else model
    return model, (lambda ids: wrapped(input_ids=ids, use_cache=False).logits)


def _train_step_ms(model, fwd, dist, batch: int, seq: int, steps: int) -> tuple[float, float, list]:
    """(first step s, median ms/step, losses) of the loop's step: bf16 autocast forward, loss, backward,
    global gradient norm with clipping, the divergence check's host read, fused AdamW, zero_grad.
    One fixed batch: the loss must fall (memorisation), which shows gradients flow."""
    import torch
    import torch.nn.functional as F

    from ..pipelines.distributed import clip_grad_norm
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq + 1), device=dist.device,
                        generator=torch.Generator(dist.device).manual_seed(dist.rank))
    losses = []

    def step():
        with torch.autocast("cuda", torch.bfloat16):
            loss = F.cross_entropy(fwd(ids[:, :-1]).float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        norm = clip_grad_norm(model, 1.0)
        torch.isfinite(torch.stack([loss.detach(), norm.float()])).all().item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    tick = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first = time.perf_counter() - tick
    return first, _ms(step, reps=steps, warmup=2), losses


def bench_train(rep: Report, entries: list[str], variants: list[str], peers: bool, steps: int, batch: int = 16,
                seq: int = 2048, jsonl: Optional[str] = None):
    """Training steps of zoo entries under each pipeline variant (strategy, torch.compile, activation
    checkpointing), beside transformers' Llama of the same size; under torchrun every rank runs `batch`
    rows (weak scaling), tokens/s summed over ranks. Each row is also appended to `jsonl` as it is measured,
    so a run cut short keeps what it measured."""
    import json

    import torch

    from ..pipelines.distributed import setup
    unknown = sorted(set(variants) - set(TRAIN_VARIANTS))
    if unknown:
        raise ValueError(f"--variants: unknown {', '.join(unknown)}; expected some of {', '.join(TRAIN_VARIANTS)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rate = _matmul_tflops()
    rows, by = [], {}
    todo = [(e, v) for e in entries for v in [*variants, *(["llama", "llama+compile"] if peers and e in LLAMA_PEERS
                                                            else [])] if not (v.startswith("plain") and world > 1)]
    dist, owner = None, None
    for entry, variant in todo:
        strategy = variant.split("+")[0]
        dist = setup("auto" if strategy in ("plain", "llama") else strategy)
        owner = owner or (dist if dist.owns_group else None)
        model = fwd = None  # a variant that failed must not keep its model (and its memory) into the next
        torch._dynamo.reset()  # nor compiled code holding on to an earlier variant's weights
        _free()
        torch.cuda.reset_peak_memory_stats()
        name = f"transformers Llama (sdpa), {entry} size" if strategy == "llama" else entry
        try:
            model, fwd = (_llama(entry, "compile" in variant, dist) if strategy == "llama"
                          else _zoo_variant(entry, variant, dist))
            params = sum(p.numel() for p in model.parameters()) * (dist.world if strategy == "fsdp" else 1)
            first, ms, losses = _train_step_ms(model, fwd, dist, batch, seq, steps)
            tokens = dist.world * batch * seq / ms * 1e3
            peak = torch.cuda.max_memory_allocated() / 2**30
            mfu = 6 * params * tokens / dist.world / (rate * 1e12)
            row = [name, variant, dist.world, f"{params / 1e6:.1f}M", ms, f"{tokens / 1e3:.1f}k", f"{first:.0f} s",
                   peak, f"{100 * mfu:.1f}%", f"{losses[0]:.2f} -> {losses[-1]:.2f}"]
            by[entry, variant] = tokens, peak
        except Exception as e:  # a variant that fails is reported, the others still run
            row = [name, variant, dist.world, "", "", "", "", "", "", f"error: {type(e).__name__}: {str(e)[:200]}"]
        rows.append(row)
        if dist.main:
            print(" | ".join(map(str, row)), flush=True)
            if jsonl:
                with open(jsonl, "a") as f:
                    f.write(json.dumps(row, default=str) + "\n")
    if dist is not None and dist.main:
        rep.table(f"training, {world} GPU(s) x batch {batch} x {seq} per GPU, bf16, fused AdamW, clip + finite "
                  f"check per step (MFU: 6 x params x tokens/s over the measured bf16 matmul rate "
                  f"{rate:.0f} TFLOP/s)",
                  ["model", "variant", "GPUs", "params", "ms/step", "tokens/s (all GPUs)", "first step",
                   "peak GiB", "MFU", "loss"], rows)
        rep.table("against the targets (tokens/s and peak memory ratios from the rows above)",
                  ["entry", "FSDP2 / plain (eager)", "FSDP2 / plain (compiled)", "compiled xLSTM / compiled Llama",
                   "AC peak memory cut (eager)", "AC tokens/s cost (eager)"],
                  [_targets(entry, by) for entry in entries])
    if owner is not None:
        owner.close()
    return dist if dist is not None else setup()


def _targets(entry: str, by: dict) -> list:
    def ratio(a, b, i=0):
        return f"{by[entry, a][i] / by[entry, b][i]:.3f}" if (entry, a) in by and (entry, b) in by else "-"

    def cut(a, b):
        return f"{100 * (1 - by[entry, a][1] / by[entry, b][1]):.0f}%" if (entry, a) in by and (entry, b) in by else "-"

    cost = (f"{100 * (1 - by[entry, 'plain+ac'][0] / by[entry, 'plain'][0]):.0f}%"
            if (entry, "plain+ac") in by and (entry, "plain") in by else "-")
    return [entry, ratio("fsdp", "plain"), ratio("fsdp+compile", "plain+compile"),
            ratio("plain+compile", "llama+compile"), cut("plain+ac", "plain"), cost]
