"""xlstm-zoo as one more column of the peers' harness, ../shared/bench/anchors_gpu.py (exec'd in its namespace,
where register_*, LMAdapter, DEVICE, DTYPE are defined), so ours and the peers are measured in one run:

    python3 ../shared/bench/anchors_gpu.py --out $OUT --sections A,B,C,E --plugin benchmarks/anchors_plugin.py
    python3 ../shared/bench/anchors_gpu.py --out $OUT --sections D --plugin benchmarks/anchors_plugin.py --only zoo
    python3 ../shared/bench/anchors_gpu.py --out /tmp/x --tiny --device cpu --sections B,C,D,E \
        --plugin benchmarks/anchors_plugin.py --only zoo        # smoke test without a GPU

`auto` kernels take our Triton kernels on CUDA and the native ones on the CPU smoke test.
"""

import torch

try:
    import xlstm_zoo
    from xlstm_zoo.kernels import get_mlstm_kernel, get_mlstm_step_kernel
    from xlstm_zoo.xlstm.cuda_graph import graph_decoder
except ImportError:
    xlstm_zoo = None


def _zoo_large(cfg, weight_mode="single", **kernels):
    """An xLSTM Large model of the harness's shapes (random init, as the peers)."""
    return xlstm_zoo.build_model({"model": {"kind": "xlstm-large-lm", **cfg, "weight_mode": weight_mode,
                                            "kernels": kernels}}, device=DEVICE)


def _zoo_lm(cfg, weight_mode="single"):
    model = _zoo_large(cfg, weight_mode, mode="inference", chunk_size=128).to(DTYPE).eval()

    @torch.no_grad()
    def prefill(ids):
        return model(ids)

    @torch.no_grad()
    def generate(ids, n):
        return model.generate(ids, n, eos_token_id=None)[:, ids.shape[1]:]

    @torch.no_grad()
    def start_decode(ids):
        logits, state = model(ids)
        runner, token = graph_decoder(model, state), logits[:, -1].argmax(-1)
        return lambda: runner(token)  # one captured decode step (eager static-buffer step on the CPU)

    return LMAdapter(model, prefill, generate, start_decode, note="chunkwise/step auto (Triton on CUDA), L=128, "  # noqa: F821
                     "decode from a captured CUDA graph")


def _zoo_train(shapes, compile=False):
    model = _zoo_large(shapes["xlstm"], chunk_size=128)
    forward = torch.compile(model) if compile else model
    return model, (lambda ids: forward(ids).logits)


if xlstm_zoo is not None:
    register_seq_kernel(  # noqa: F821
        "zoo:chunkwise(L=128)",
        lambda: (lambda q, k, v, i, f: get_mlstm_kernel("chunkwise--auto")(q, k, v, i, f, chunk_size=128)), chunk=128)
    register_step_kernel("zoo:step", lambda: get_mlstm_step_kernel("auto"))  # noqa: F821
    register_lm("zoo:xLSTM-Large", _zoo_lm, note="xlstm-zoo, graph decode")  # noqa: F821
    register_lm("zoo:xLSTM-Large[fused weights]", lambda cfg: _zoo_lm(cfg, "fused"),  # noqa: F821
                note="xlstm-zoo, graph decode, stacked projections")
    register_train("zoo:xLSTM-Large-125M[L=128]", _zoo_train)  # noqa: F821
    if DEVICE != "cpu":  # noqa: F821
        register_train("zoo:xLSTM-Large-125M[L=128, torch.compile]", lambda shapes: _zoo_train(shapes, True))  # noqa: F821
