"""FSDP2 under torchrun (gloo, CPU) against one plain process, resume of a killed 2-process run in one process,
the divergence guard, packed text data, and a 2-step smoke run of every paper recipe at a reduced width.
Processes run one at a time with one thread each, so they do not contend."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import xlstm_zoo
from xlstm_zoo import build_model
from xlstm_zoo.registry.cli import main
from xlstm_zoo.registry.data.text import TextTask
from xlstm_zoo.registry.pipelines.checkpoint import latest, load_weights
from xlstm_zoo.registry.pipelines.metrics import read_metrics
from xlstm_zoo.schemas.recipe import TextData

from test_pipelines_train import PARITY, cli, free_port, losses

RECIPES = Path(xlstm_zoo.__file__).parent / "zoo" / "recipes"
PARITY_20 = [PARITY, "train.batch_size=16", "data.eval_samples=32", "data.eval_lengths.max=60",
             "schedule.warmup_steps=5", "train.log_every=1", "eval.every=0", "eval.early_stop=null",
             "train.max_steps=20", "train.checkpoint_every=0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
REL = 1e-4  # the processes sum the same per-row losses in another order: float32 rounding only


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
            str(free_port()), "-m", "xlstm_zoo.registry.cli", "train", *args]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> dict[int, float]:
    """The reference: 20 steps in one process, no wrapper."""
    out = tmp_path_factory.mktemp("plain") / "run"
    subprocess.run(cli("train", *PARITY_20, "--out", str(out)), env=ENV, check=True, capture_output=True)
    return losses(out)


@pytest.mark.parametrize("extra", [[], ["train.activation_checkpointing=true", "train.grad_accum_steps=2"]],
                         ids=["fsdp", "fsdp+ac+accum"])
def test_two_fsdp_processes_match_one_plain_process(tmp_path, plain_run, extra):
    run = subprocess.run(torchrun(*PARITY_20, "train.strategy=fsdp", *extra, "--out", str(tmp_path)), env=ENV,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    two = losses(tmp_path)
    assert list(two) == list(range(1, 21))
    assert two == pytest.approx(plain_run, rel=REL)
    assert plain_run[20] < plain_run[1]  # it trained: the comparison is not of constants
    # model/ is a plain save_pretrained directory holding the gathered (unsharded) weights
    model = build_model(f"local-dir:{tmp_path / 'model'}")
    saved = build_model(str(RECIPES.parent / "formal-lang-small.yaml"))
    load_weights(latest(tmp_path / "checkpoints"), saved)
    assert all(torch.equal(p, saved.state_dict()[n]) for n, p in model.state_dict().items())


def test_killed_fsdp_run_resumes_in_one_process(tmp_path, plain_run):
    args = [*PARITY_20, "train.strategy=fsdp", "train.checkpoint_every=4"]
    proc = subprocess.Popen(torchrun(*args, "--out", str(tmp_path)), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "checkpoints" / "latest").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    kill_with_workers(proc)
    killed_at = max(losses(tmp_path))
    assert 4 <= killed_at < 20, "killed after the first checkpoint, before the end"
    # one process, no wrapper: the strategy is not part of the recipe's identity
    assert main(["train", *args[:-2], "train.checkpoint_every=4", "--out", str(tmp_path), "--resume"]) == 0
    resumed = losses(tmp_path)
    assert list(resumed) == list(range(1, 21))
    assert resumed == pytest.approx(plain_run, rel=REL)


def kill_with_workers(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and the workers it started (torchrun gives each worker its own session, so
    they are not in the launcher's process group), then wait until all are gone."""
    workers = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait()
    while any(_running(pid) for pid in workers):
        time.sleep(0.01)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is dead, only unreaped
    except FileNotFoundError:
        return False


def _strict(text: str):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=reject)


def test_divergence_stops_at_once_and_keeps_only_finite_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    start = time.perf_counter()
    code = main(["train", "formal-lang-small", "optimizer.lr=1e6", "train.max_steps=200", "train.checkpoint_every=1",
                 "train.batch_size=16", "train.log_every=1", "eval.every=0", "eval.early_stop=null",
                 "data.eval_samples=32", "--out", str(out)])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 3 and seconds < 60
    records = [_strict(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stop = records[-1]
    assert "diverged" in stop and f"diverged at step {stop['step']}" in err
    assert stop["step"] < 200 and not (out / "model").exists()
    assert all(r["loss"] is None or math.isfinite(r["loss"]) for r in records)
    kept = latest(out / "checkpoints")
    if kept is not None:  # the last checkpoint is older than the bad step and finite
        assert f"last good checkpoint: {kept}" in err and int(kept.name.split("-")[1]) < stop["step"]
        model = build_model("formal-lang-small")
        load_weights(kept, model)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir()) == ([kept.name] if kept else [])


def _corpus(path: Path, docs: int = 40) -> Path:
    words = "the quick brown fox jumps over a lazy dog while seven xlstm blocks remember it".split()
    with path.open("w") as f:
        for i in range(docs):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(30 + i % 17))
            f.write(json.dumps({"text": f"Document {i}: {text}."}) + "\n")
    return path


def test_packed_order_depends_only_on_the_global_sample_index(tmp_path):
    config = TextData(files=[str(_corpus(tmp_path / "docs.jsonl"))], tokenizer="gpt2", sampling="packed",
                      context_length=16, val_fraction=0.2, cache_dir=str(tmp_path / "cache"))
    task = TextTask(config)
    stream = task._train
    assert (stream == 50256).sum() >= 30  # EOS after every training document
    assert task.tokenizer.decode(stream[: list(stream).index(50256)].tolist()).startswith("Document 0: the quick")
    big = task.train_batch(7, 2, 8)  # global samples 8..15
    halves = [task.train_batch(7, step, 4) for step in (3, 4)]
    assert torch.equal(big.inputs, torch.cat([h.inputs for h in halves]))
    assert torch.equal(big.targets[:, :-1], big.inputs[:, 1:])
    epoch = [task.train_batch(7, 1, task.sequences).inputs[:, 0].tolist()]  # one epoch visits every sequence once
    starts = sorted(epoch[0])
    assert sorted(stream[i * 16] for i in range(task.sequences)) == starts
    assert not torch.equal(task.train_batch(7, 1, 8).inputs, task.train_batch(8, 1, 8).inputs)
    again = TextTask(config)  # read back from the cache
    assert list(tmp_path.joinpath("cache").iterdir()) and (again._train == stream).all()


SMALL_XLSTM = "{model.embedding_dim: 64, model.num_blocks: 2}"
PAPER = sorted(p.stem for p in RECIPES.glob("xlstm-*.yaml") if not p.stem.endswith("-lora"))  # LoRA: test_finetune.py


@pytest.mark.parametrize("recipe", PAPER)
def test_recipe_smoke(recipe, tmp_path, capsys):
    """Two steps of each recipe as written (optimizer, schedule, strategy, precision), at width 64."""
    width = {"xlstm-7b-finetune": "{model.embedding_dim: 64, model.num_heads: 2, model.num_blocks: 2, "
                                  "model.kernels.mode: train}",
             **{r: SMALL_XLSTM[:-1] + ", model.slstm_at: [1]}" for r in PAPER if r.endswith("-7-1")}}
    out = tmp_path / "run"
    args = [str(RECIPES / f"{recipe}.yaml"), f"model.overrides={width.get(recipe, SMALL_XLSTM)}",
            "model.pretrained=false", f"data.files=[{_corpus(tmp_path / 'docs.jsonl')}]", "data.tokenizer=gpt2",
            "data.context_length=32", "data.val_fraction=0.2", "train.batch_size=4", "train.max_steps=2",
            "train.compile=false", "train.checkpoint_every=0", "train.log_every=1", "eval.batch_size=4",
            "eval.max_batches=1", "--out", str(out)]
    assert main(["train", *args]) == 0, capsys.readouterr().err[-2000:]
    from xlstm_zoo.registry.pipelines.recipes import load_recipe
    recipe_cfg = load_recipe(RECIPES / f"{recipe}.yaml")
    records = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["lr"] == pytest.approx(recipe_cfg.optimizer.lr / recipe_cfg.schedule.warmup_steps)
    assert abs(records[0]["loss"] - math.log(50304)) < 1.0  # about uniform over the vocabulary at init
    assert build_model(f"local-dir:{out / 'model'}").config.embedding_dim == 64


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_metadata_cannot_run_code(tmp_path):
    """DCP's index is a pickle: it is read with an unpickler that admits DCP's metadata classes only."""
    import pickle

    (tmp_path / ".metadata").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ValueError, match="names (posix|os).system, which is not DCP metadata"):
        load_weights(tmp_path, build_model("formal-lang-small"))
