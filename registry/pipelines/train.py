"""The training loop: AdamW on the model's weight-decay groups, warm-up + cosine schedule, gradient clipping,
periodic evaluation with early stopping, atomic checkpoints and exact resume, metrics.jsonl and a plot."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ...schemas.recipe import Recipe, Schedule
from ...xlstm.optim import param_groups
from ..checkpoints import save_pretrained
from ..data import Batch, Task, make_task
from . import checkpoint
from .distributed import Dist, setup
from .evaluate import autocast, evaluate
from .metrics import MetricsLog, plot
from .recipes import build, load_recipe, save_recipe


def lr_factor(schedule: Schedule, max_steps: int):
    """Multiplier of the peak lr at a step: linear warm-up from 0, cosine decay to `min_lr_ratio`, then flat."""
    decay = schedule.decay_steps or max_steps
    warmup, floor = schedule.warmup_steps, schedule.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, decay - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def loss_terms(model: torch.nn.Module, task: Task, batch: Batch, dist: Dist,
               precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to differentiate, global mean loss). The local sum is scaled by world / global target count, so
    that DDP's gradient averaging yields the gradient of the global mean: the same step as one process."""
    with autocast(dist.device, precision):
        loss_sum, count = task.loss(model, batch.inputs.to(dist.device), batch.targets.to(dist.device))
    count = dist.sum(count.float())
    return loss_sum * dist.world / count, dist.sum(loss_sum.detach()) / count


def train(recipe: Recipe, out: Path, resume: bool = False) -> dict:
    """Train per the recipe into `out`; returns the final validation metrics (with the step reached)."""
    dist = setup()
    cfg = recipe.train
    if cfg.batch_size % dist.world:
        raise ValueError(f"train.batch_size: {cfg.batch_size} is not divisible by {dist.world} processes")
    torch.manual_seed(cfg.seed)
    task = make_task(recipe.data)
    model = build(recipe, task, dist.device)
    optimizer = torch.optim.AdamW(param_groups(model, recipe.optimizer.weight_decay), lr=recipe.optimizer.lr,
                                  betas=recipe.optimizer.betas, eps=recipe.optimizer.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(recipe.schedule, cfg.max_steps))
    start, finished = 0, False
    found = checkpoint.latest(out / "checkpoints") if resume else None
    if found is not None:
        if load_recipe(out / "recipe.yaml") != recipe:
            raise ValueError(f"--resume: the recipe differs from the one {out} was started with ({out / 'recipe.yaml'})")
        start, finished = checkpoint.load(found, model, optimizer, scheduler)
    elif dist.main:
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, out / "recipe.yaml")
    log = MetricsLog(out / "metrics.jsonl", start if found else None) if dist.main else None
    if finished:
        metrics = {"step": start, **_validate(recipe, task, model, dist)}
    else:
        metrics = _loop(recipe, task, model, dist.wrap(model), optimizer, scheduler, dist, log, out, start)
    if dist.main:
        save_pretrained(model, out / "model")
        try:
            plot(out / "metrics.jsonl", out / "metrics.png")
        except ImportError:
            print("metrics.png skipped: matplotlib is not installed (pip install 'xlstm-zoo[dev]')", file=sys.stderr)
    dist.barrier()
    return metrics


def _loop(recipe, task: Task, model, wrapped, optimizer, scheduler, dist: Dist, log, out: Path, start: int) -> dict:
    cfg, ev = recipe.train, recipe.eval
    step, metrics, stopped = start, {}, False
    tokens, tick = 0, time.perf_counter()
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not dist.main, dynamic_ncols=True, desc=out.name)
    for step in range(start + 1, cfg.max_steps + 1):
        batch = task.train_batch(cfg.seed, step, cfg.batch_size)
        tokens += batch.inputs.numel()
        loss, mean_loss = loss_terms(wrapped, task, batch.shard(dist.rank, dist.world), dist, cfg.precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        bar.update()
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            now = time.perf_counter()
            record = {"step": step, "loss": mean_loss.item(), "lr": lr, "tokens_per_s": tokens / (now - tick)}
            tokens, tick = 0, now
            bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            if log:
                log.write(record)
        if ev.every and step % ev.every == 0:
            metrics = _evaluate(recipe, task, model, dist, log, step)
            stopped = ev.early_stop is not None and _reached(ev.early_stop, metrics)
        if stopped or step == cfg.max_steps or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            if dist.main:
                finished = stopped or step == cfg.max_steps
                checkpoint.save(out / "checkpoints", step, finished, model, optimizer, scheduler)
            dist.barrier()
        if stopped:
            break
    bar.close()
    if not metrics or metrics["step"] != step:
        metrics = _evaluate(recipe, task, model, dist, log, step)
    return metrics


def _reached(stop, metrics: dict) -> bool:
    if stop.metric not in metrics:
        raise ValueError(f"eval.early_stop.metric: expected one of {', '.join(sorted(metrics))}, got {stop.metric!r}")
    value = metrics[stop.metric]
    return value >= stop.threshold if stop.mode == "max" else value <= stop.threshold


def _validate(recipe, task, model, dist: Dist) -> dict:
    return evaluate(model, task, recipe.eval.batch_size, recipe.eval.max_batches, dist.device, recipe.train.precision)


def _evaluate(recipe, task, model, dist: Dist, log, step: int) -> dict:
    """Validate and log the metrics at `step`."""
    metrics = {"step": step, **_validate(recipe, task, model, dist)}
    if log:
        log.write(metrics)
    return metrics
