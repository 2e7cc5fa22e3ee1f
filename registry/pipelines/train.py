"""The training loop: AdamW on the model's weight-decay groups, warm-up + cosine schedule, gradient clipping,
gradient accumulation, periodic evaluation with early stopping, atomic checkpoints and exact resume (also on
another number of processes), a divergence guard, metrics.jsonl and a plot. How the model is spread over
processes is distributed.py's part (`wrap_model`)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ...schemas.recipe import Recipe, Schedule
from ...xlstm.optim import param_groups
from ..checkpoints import adapters, save_pretrained, save_tokenizer
from ..data import Batch, Task, make_task
from . import checkpoint
from .distributed import Dist, all_finite, clip_grad_norm, grad_sync, plain_copy, setup, wrap_model
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


class Diverged(RuntimeError):
    """A non-finite loss, gradient norm or weight: the run stops before the optimizer applies it."""


def loss_terms(model: torch.nn.Module, task: Task, batch: Batch, dist: Dist,
               precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the per-target losses, number of targets) of one micro-batch, as the task defines them."""
    with autocast(dist.device, precision):
        return task.loss(model, batch.inputs.to(dist.device), batch.targets.to(dist.device))


RUNTIME_KEYS = ("strategy", "compile", "activation_checkpointing")
"""Train settings that change how a run executes, not what it computes: --resume may change them."""


def _run_differences(a: Recipe, b: Recipe) -> list[str]:
    """`key: started with X, now Y` for each setting in which recipe `a` (the new) and `b` (the run's) differ,
    leaving out those that only change how a run executes."""
    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
        return {prefix[:-1]: value}

    keep = {k: getattr(a.train, k) for k in RUNTIME_KEYS}
    new, old = flat(a.model_dump(mode="json")), flat(b.model_copy(update={"train": b.train.model_copy(
        update=keep)}).model_dump(mode="json"))
    return [f"{key}: started with {old.get(key)!r}, now {new.get(key)!r}" for key in sorted(new.keys() | old.keys())
            if new.get(key) != old.get(key)]


BASE_DIGESTS = "base_sha256.json"
"""An adapter run's record of its base's files (checkpoints.adapters.base_digests), checked on --resume: the
checkpoints hold only the adapter, the frozen base is read again from its source."""


def train(recipe: Recipe, out: Path, resume: bool = False) -> dict:
    """Train per the recipe into `out`; returns the final validation metrics (with the step reached)."""
    cfg = recipe.train
    dist = setup(cfg.strategy)
    try:
        return _train(recipe, out, resume, dist)
    finally:
        dist.close()


def _train(recipe: Recipe, out: Path, resume: bool, dist: Dist) -> dict:
    cfg = recipe.train
    if cfg.batch_size % (dist.world * cfg.grad_accum_steps):
        raise ValueError(f"train.batch_size: {cfg.batch_size} is not divisible by {dist.world} processes x "
                         f"{cfg.grad_accum_steps} accumulation steps")
    if not resume and _holds_a_run(out):
        raise ValueError(f"--out {out}: holds a run already (its metrics.jsonl or checkpoints/); pass --resume to "
                         "continue it, or give another --out (a new run would overwrite it)")
    torch.manual_seed(cfg.seed)
    task = make_task(recipe.data)
    model = build(recipe, task, dist.device)
    if recipe.adapter:  # before any wrapping: DDP and FSDP2 see only the adapter as trainable
        adapters.apply(model, recipe.adapter)
    wrapped = wrap_model(model, cfg, dist)
    optimizer = torch.optim.AdamW(param_groups(model, recipe.optimizer.weight_decay), lr=recipe.optimizer.lr,
                                  betas=recipe.optimizer.betas, eps=recipe.optimizer.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(recipe.schedule, cfg.max_steps))
    start, finished, digests = 0, False, None
    found = checkpoint.latest(out / "checkpoints") if resume else None
    if found is not None:
        differences = _run_differences(recipe, load_recipe(out / "recipe.yaml"))
        if differences:
            raise ValueError(f"--resume: the recipe differs from the one {out} was started with "
                             f"({out / 'recipe.yaml'}): {'; '.join(differences)}")
        if recipe.adapter and (out / BASE_DIGESTS).is_file():  # the frozen base comes back from its source
            digests = json.loads((out / BASE_DIGESTS).read_text())
            adapters.check_base(recipe.model, digests, f"the run in {out}")
        start, finished = checkpoint.load(found, model, optimizer, scheduler)
    elif dist.main:
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, out / "recipe.yaml")
        if recipe.adapter:
            digests = adapters.base_digests(recipe.model)
            (out / BASE_DIGESTS).write_text(json.dumps(digests, indent=2) + "\n")
    log = MetricsLog(out / "metrics.jsonl", start if found else None) if dist.main else None
    if finished:
        metrics = {"step": start, **_validate(recipe, task, model, dist)}
    else:
        metrics = _loop(recipe, task, model, wrapped, optimizer, scheduler, dist, log, out, start)
    plain = plain_copy(model, dist)
    if dist.main:
        if recipe.adapter:
            adapters.save(plain, out / "model", recipe.model, digests)
        else:
            save_pretrained(plain, out / "model")
        if task.tokenizer is not None:  # model/ is self-contained: lm-eval and `eval --data` find it there
            save_tokenizer(task.tokenizer, out / "model")
        try:
            plot(out / "metrics.jsonl", out / "metrics.png")
        except ImportError:
            print("metrics.png skipped: matplotlib is not installed (pip install 'xlstm-zoo[dev]')", file=sys.stderr)
    dist.barrier()
    return metrics


def _holds_a_run(out: Path) -> bool:
    return (out / "metrics.jsonl").exists() or checkpoint.latest(out / "checkpoints") is not None


def _step(recipe, task: Task, model, wrapped, dist: Dist, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Forward and backward of one global batch in grad_accum_steps micro-batches; (global mean loss, gradient
    norm, inputs in the global batch). Each micro-batch back-propagates its loss sum times the process count
    (DDP and FSDP average gradients over processes); once all are done the gradients are divided by the
    global batch's target count. So any process count and accumulation takes the step of one process with
    the whole batch at once: the gradient of the global mean loss."""
    cfg = recipe.train
    batch = task.train_batch(cfg.seed, step, cfg.batch_size)
    rows = cfg.batch_size // cfg.grad_accum_steps
    totals = torch.zeros(2, device=dist.device)  # loss sum, target count
    for i in range(cfg.grad_accum_steps):
        micro = batch.rows(i * rows, (i + 1) * rows).shard(dist.rank, dist.world)
        with grad_sync(model, wrapped, i == cfg.grad_accum_steps - 1):
            loss_sum, count = loss_terms(wrapped, task, micro, dist, cfg.precision)
            (loss_sum * dist.world).backward()
        totals += torch.stack([loss_sum.detach().float(), count.float()])
    loss_sum, count = dist.sum(totals)
    for param in model.parameters():
        if param.grad is not None:
            param.grad.div_(count)
    return loss_sum / count, clip_grad_norm(model, cfg.grad_clip), batch.inputs.numel()


def _diverge(step: int, what: str, record: dict, log, out: Path):
    """Log the step (non-finite values as null: metrics.jsonl stays strict JSON) and stop the run."""
    if log:
        log.write({"step": step, **record, "diverged": what})
    kept = checkpoint.latest(out / "checkpoints")
    raise Diverged(f"diverged at step {step}: {what}; the run stopped "
                   f"({f'last good checkpoint: {kept}' if kept else 'no checkpoint was written'})")


def _loop(recipe, task: Task, model, wrapped, optimizer, scheduler, dist: Dist, log, out: Path, start: int) -> dict:
    cfg, ev = recipe.train, recipe.eval
    step, metrics, stopped = start, {}, False
    tokens, tick = 0, time.perf_counter()
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not dist.main, dynamic_ncols=True, desc=out.name)
    for step in range(start + 1, cfg.max_steps + 1):
        mean_loss, grad_norm, batch_tokens = _step(recipe, task, model, wrapped, dist, step)
        tokens += batch_tokens
        loss_value, norm_value = torch.stack([mean_loss, grad_norm.float()]).tolist()
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            _diverge(step, f"loss {loss_value}, gradient norm {norm_value} (before the update)",
                     {"loss": loss_value, "grad_norm": norm_value}, log, out)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        bar.update()
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            now = time.perf_counter()
            record = {"step": step, "loss": loss_value, "grad_norm": norm_value, "lr": lr,
                      "tokens_per_s": tokens / (now - tick)}
            tokens, tick = 0, now
            bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            if log:
                log.write(record)
        if ev.every and step % ev.every == 0:
            metrics = _evaluate(recipe, task, model, dist, log, step)
            stopped = ev.early_stop is not None and _reached(ev.early_stop, metrics)
        if stopped or step == cfg.max_steps or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            if not all_finite(model, dist):  # a finite step can still overflow the weights
                _diverge(step, "non-finite weights after the update (not checkpointed)", {}, log, out)
            checkpoint.save(out / "checkpoints", step, stopped or step == cfg.max_steps, model, optimizer,
                            scheduler, dist)
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
