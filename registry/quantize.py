"""Weight-only quantization of xLSTM Large models: torchao (the optional extra `quantize`) or the zoo's own.

Decoding a 7B model at batch 1 reads every weight once per token: bf16 weights bound a step at ~3.2 ms
on an H200, int8 halves the bytes and int4 quarters them. Every nn.Linear of the blocks and the lm_head is
quantized; the input/forget gate projections stay as they are (2 x NH rows, read by the Triton step kernel
itself) and so do the embedding and the norms.

backend="torchao": its int8/float8 weight-only layers dequantize eagerly and get fast under torch.compile;
its int4 layout runs tinygemm on sm80+ GPUs only, in groups of 128 inputs, or of 64 where the width is not
a multiple of 128 (the 7B's FFN down projection, 10944 inputs, which a single group size of 128 would
leave in bf16: 2.7 of int4's 5.6 GiB before). backend="zoo": int8 / int4 in xlstm/quantized.py, whose
Triton matvec kernels read the packed weights in decode steps (no torch.compile needed), on any device;
on an H200 its int8 is the faster one and torchao's int4 the faster int4 (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import difflib

QUANTIZATIONS = ("int8-weight-only", "int4-weight-only", "float8-weight-only")
BACKENDS = ("torchao", "zoo")
INT4_GROUPS = (128, 64)


def _config(method: str, group: int = INT4_GROUPS[0]):
    try:
        from torchao import quantization as tq
    except ImportError as e:
        raise ImportError(f"quantize={method!r} needs torchao: pip install 'xlstm-zoo[quantize]'") from e
    if method == "int8-weight-only":
        return tq.Int8WeightOnlyConfig(granularity=tq.PerRow())
    if method == "int4-weight-only":
        return tq.Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d",
                                       int4_choose_qparams_algorithm="hqq")
    return tq.Float8WeightOnlyConfig()


def check_quantization(method: str, backend: str = "torchao") -> None:
    for what, value, known in (("method", method, QUANTIZATIONS), ("backend", backend, BACKENDS)):
        if value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            raise ValueError(f"quantize: unknown {what} {value!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; expected one of {', '.join(known)}")
    if backend == "zoo" and method == "float8-weight-only":
        raise ValueError("quantize: backend 'zoo' has int8-weight-only and int4-weight-only; float8 is torchao's")


def add_quantize(parser: argparse.ArgumentParser) -> None:
    """`--quantize METHOD` for the verbs that build a model (no torch import: the CLI's parser is built
    for every verb)."""
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="weight-only quantization (xLSTM Large)")
    parser.add_argument("--quantize-backend", choices=BACKENDS, default="torchao",
                        help="torchao, or the zoo's int8/int4 layers with Triton matvec kernels (any device)")


def quantize_model(model, method: str, backend: str = "torchao"):
    """Quantize `model`'s weights in place with `method` (one of QUANTIZATIONS) through `backend` (one of
    BACKENDS); returns the model.

    Quantize last: after the dtype, the device and the weight mode are what the model will run with."""
    import torch
    from torch import nn

    from ..xlstm.large import MLSTMLayerLarge

    check_quantization(method, backend)
    if getattr(getattr(model, "config", None), "kind", None) != "xlstm-large-lm":
        raise ValueError(f"quantize={method!r}: weight-only quantization covers the xLSTM Large family "
                         f"(kind xlstm-large-lm), got kind {getattr(model.config, 'kind', type(model).__name__)!r}")
    device = next(model.parameters()).device
    if backend == "torchao" and method == "int4-weight-only" and device.type != "cuda":
        raise ValueError("quantize='int4-weight-only' needs the model on a CUDA GPU (torchao's int4 layout runs "
                         "tinygemm kernels; backend='zoo' runs int4 anywhere); int8-weight-only and "
                         "float8-weight-only run on the CPU too")
    if backend == "torchao" and method == "int4-weight-only" and next(model.parameters()).dtype != torch.bfloat16:
        raise ValueError("quantize='int4-weight-only' needs bfloat16 weights (build with dtype=torch.bfloat16)")
    gates = {id(lin) for layer in model.modules() if isinstance(layer, MLSTMLayerLarge)
             for name in ("ifgate_preact", "igate_preact", "fgate_preact") if (lin := getattr(layer, name, None))}

    def chosen(module, fqn="") -> bool:
        if not isinstance(module, nn.Linear) or id(module) in gates:
            return False
        # torchao's float8 scale of an all-zero row is 0 and the row turns NaN (fresh xLSTM Large models have
        # zero output-gate rows): such layers stay as they are
        return method != "float8-weight-only" or bool(module.weight.detach().abs().amax(1).gt(0).all())

    if backend == "zoo":
        _quantize_zoo(model, method, chosen)
    elif method == "int4-weight-only":
        from torchao.quantization import quantize_
        for group in INT4_GROUPS:  # each layer at the largest group size that divides its width
            quantize_(model, _config(method, group), filter_fn=lambda m, fqn, g=group: (
                chosen(m) and not hasattr(m.weight, "__tensor_flatten__") and m.in_features % g == 0))
    else:
        from torchao.quantization import quantize_
        quantize_(model, _config(method), filter_fn=chosen)
    model.quantization = method if backend == "torchao" else f"{method} (zoo)"
    return model


def _quantize_zoo(model, method: str, chosen) -> None:
    """Swap each chosen nn.Linear for the zoo's WeightOnlyLinear, one layer at a time."""
    from ..xlstm.quantized import BITS, WeightOnlyLinear
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if chosen(child):
                setattr(parent, name, WeightOnlyLinear(child, BITS[method]))


def tensor_bytes(t) -> int:
    """Bytes a (possibly quantized, tensor-subclass) parameter holds in memory."""
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names if getattr(t, n) is not None)
    return t.numel() * t.element_size()


def _linear(x, weight, bias):
    import torch.nn.functional as F
    return F.linear(x, weight, bias)


def _small_batch_forward(module, compiled, max_rows: int, x):
    if x.is_cuda and x.numel() <= max_rows * x.shape[-1]:
        return compiled(x, module.weight, module.bias)
    return _linear(x, module.weight, module.bias)


def compile_small_batch(model, max_rows: int = 16):
    """torch.compile the quantized projections for inputs of up to `max_rows` rows (decode steps), where
    torchao's int8/float8 weight-only layers are otherwise eager dequantize-then-multiply. One compiled
    function for all layers (a few weight shapes); longer inputs (prefill) stay eager. Compiles on first
    use, which the CUDA-graph runner's warm-up does before capturing."""
    import functools

    import torch
    from torch import nn

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    compiled = torch.compile(_linear, dynamic=False, fullgraph=True)
    for module in model.modules():
        if isinstance(module, nn.Linear) and hasattr(module.weight, "__tensor_flatten__"):
            module.forward = functools.partial(_small_batch_forward, module, compiled, max_rows)
    return model
