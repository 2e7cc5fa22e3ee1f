"""`xlstm-zoo bench lora`: LoRA fine-tuning steps of xLSTM-7B on one GPU (random weights, bf16 base).

Rank 16 on the mLSTM projections (the family default: q, k, v, output gate, out_proj of every block), the
adapter float32, bf16 autocast, fused AdamW on the adapter only, batch 4 x 2048 of one fixed batch (the
loss must fall: gradients reach the adapters). Once without and once with activation checkpointing per
block; peak memory is over the timed steps (the model and the adapter's optimizer state included).
"""

from __future__ import annotations

import time

from .report import Report, _ms

OVERRIDES = {"model.kernels.mode": "train", "model.weight_mode": "single"}


def lora_model(device, overrides=None, rank: int = 16):
    """xlstm-7b (random init, bf16) with fresh LoRA adapters."""
    import torch

    from ...schemas.recipe import LoRA
    from ..builder import build_model
    from ..checkpoints import adapters

    model = build_model("xlstm-7b", overrides={**OVERRIDES, **(overrides or {})}, device=device, dtype=torch.bfloat16)
    return adapters.apply(model, LoRA(rank=rank, alpha=2 * rank, base_dtype="bfloat16"))


def checkpoint_blocks(model) -> None:
    """Recompute each block's activations in the backward pass instead of keeping them."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    from ...xlstm.large import XLSTMLargeBlock
    apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, XLSTMLargeBlock))


def train_step(model, optimizer, ids, losses: list):
    import torch
    import torch.nn.functional as F

    with torch.autocast(ids.device.type, torch.bfloat16):
        logits = model(ids[:, :-1]).logits
    loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    losses.append(loss.detach())


def bench_lora(rep: Report, steps: int = 5, batch: int = 4, seq: int = 2048, rank: int = 16) -> None:
    import torch

    model = lora_model("cuda", rank=rank)
    params = sum(p.numel() for p in model.parameters())
    adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq + 1), device="cuda",
                        generator=torch.Generator("cuda").manual_seed(0))
    rows = []
    for checkpointing in (False, True):
        if checkpointing:
            checkpoint_blocks(model)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        losses: list = []
        tick = time.perf_counter()
        try:
            train_step(model, optimizer, ids, losses)
            torch.cuda.synchronize()
            first = time.perf_counter() - tick
            ms = _ms(lambda: train_step(model, optimizer, ids, losses), reps=steps, warmup=1)
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            rows.append(["per block" if checkpointing else "none", "out of memory", "", "", "", ""])
            continue
        rows.append(["per block" if checkpointing else "none", 1e3 / ms, batch * seq / ms * 1e3, f"{first:.0f} s",
                     torch.cuda.max_memory_allocated() / 2**30, f"{losses[0]:.3f} -> {losses[-1]:.3f}"])
    rep.table(f"xlstm-7b LoRA rank {rank} on the mLSTM projections ({adapter / 1e6:.1f}M of {params / 1e9:.2f}B "
              f"parameters trainable), batch {batch} x {seq}, bf16 base, bf16 autocast, fused AdamW",
              ["activation checkpointing", "steps/s", "tokens/s", "first step", "peak GiB", "loss"], rows)
