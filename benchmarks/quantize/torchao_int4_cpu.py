"""torchao's int4 weight-only quality on a CPU-trained run, without a GPU.

torchao's int4 layout (tinygemm) only packs on CUDA, but its numbers are HQQ's: this sets every layer that
quantize_model(..., "int4-weight-only") would quantize to the weight torchao's HQQ + tinygemm convention
dequantizes to ((q - 8) * scale + zero per group; groups of 128, or 64 where the width needs it), in
bfloat16 as the GPU runs it, and evaluates the run's validation set as `xlstm-zoo eval RUN` does.

    python benchmarks/quantize/torchao_int4_cpu.py RUN
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn


def hqq_dequantized(w: torch.Tensor, group: int) -> torch.Tensor:
    from torchao.quantization.quant_primitives import _choose_qparams_and_quantize_affine_hqq
    wb = w.detach().to(torch.bfloat16)
    q, scale, zero, _ = _choose_qparams_and_quantize_affine_hqq(wb, nbits=4, group_size=group, axis=1,
                                                                 compute_dtype=torch.bfloat16, device="cpu",
                                                                 raw_output=False)
    N, K = wb.shape
    deq = (q.float().view(N, K // group, group) - 8) * scale.float().view(N, -1, 1) + zero.float().view(N, -1, 1)
    return deq.view(N, K).to(torch.bfloat16).to(w.dtype)


def main(run: str) -> None:
    from xlstm_zoo.registry.data import make_task
    from xlstm_zoo.registry.pipelines.evaluate import evaluate
    from xlstm_zoo.registry.pipelines.recipes import build, load_recipe
    from xlstm_zoo.registry.quantize import INT4_GROUPS
    from xlstm_zoo.xlstm.large import MLSTMLayerLarge

    recipe = load_recipe(Path(run) / "recipe.yaml", [])
    recipe.model = recipe.model.model_copy(update={"name": f"local-dir:{Path(run).resolve() / 'model'}",
                                                   "overrides": {}, "pretrained": False})
    task, device = make_task(recipe.data), torch.device("cpu")
    model = build(recipe, task, device)
    gates = {id(m) for layer in model.modules() if isinstance(layer, MLSTMLayerLarge)
             for m in (getattr(layer, n, None) for n in ("ifgate_preact", "igate_preact", "fgate_preact")) if m}
    done = 0
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m) not in gates:
            group = next((g for g in INT4_GROUPS if m.in_features % g == 0), None)
            if group is not None:
                m.weight.data = hqq_dequantized(m.weight, group)
                done += 1
    metrics = evaluate(model, task, recipe.eval.batch_size, recipe.eval.max_batches, device, recipe.train.precision)
    print(json.dumps({"layers": done, **metrics}))


if __name__ == "__main__":
    main(sys.argv[1])
