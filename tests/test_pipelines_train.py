"""Training runs end to end: exact resume after SIGKILL, the LM entry's outputs and eval, and a 2-process
gloo run equal to one process. Processes run one at a time with 1-2 threads each, so they do not contend."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xlstm_zoo import build_model
from xlstm_zoo.registry.builder import build_for_eval
from xlstm_zoo.registry.cli import main
from xlstm_zoo.registry.data.tokenizer_specs import load_tokenizer
from xlstm_zoo.registry.pipelines.recipes import load_recipe, recipe_tokenizer
from xlstm_zoo.registry.pipelines.checkpoint import load_weights
from xlstm_zoo.registry.pipelines.metrics import read_metrics

import xlstm_zoo

PARITY = str(Path(xlstm_zoo.__file__).parent / "zoo" / "recipes" / "parity-slstm.yaml")
SMALL = ["train.batch_size=16", "data.eval_samples=32", "data.eval_lengths={min: 40, max: 60}",
         "schedule.warmup_steps=5", "train.log_every=1", "eval.every=0", "eval.early_stop=null"]


def cli(*args: str, threads: int = 1) -> list[str]:
    return [sys.executable, "-c", f"import sys, torch; torch.set_num_threads({threads}); "
            "from xlstm_zoo.registry.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def losses(run: Path) -> dict[int, float]:
    records = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), "every logged step exactly once"
    return {r["step"]: r["loss"] for r in records}


@pytest.fixture
def one_thread():
    """Runs compared bit for bit must use the same thread count (it changes the order of float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tmp_path, one_thread, capsys):
    args = [PARITY, *SMALL, "train.max_steps=40", "train.checkpoint_every=10"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli("train", *args, "--out", str(killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "latest").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = max(losses(killed))
    assert 10 <= interrupted_at < 40, "killed after the first checkpoint, before the end"
    assert main(["train", *args, "--out", str(killed), "--resume"]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = losses(killed), losses(tmp_path / "straight")
    assert list(resumed) == list(range(1, 41))
    assert resumed[40] == straight[40] and resumed == straight
    assert main(["train", *args, "train.seed=5", "--out", str(killed), "--resume"]) == 2
    assert "--resume: the recipe differs" in (err := capsys.readouterr().err)
    assert "train.seed: started with 42, now 5" in err  # the recipe's train.seed
    # Without --resume the run is not overwritten.
    assert main(["train", *args, "--out", str(killed)]) == 2
    assert "holds a run already" in capsys.readouterr().err
    assert losses(killed) == resumed
    # A finished run resumes to the same end without training further.
    assert main(["train", *args, "--out", str(killed), "--resume"]) == 0
    assert list(losses(killed)) == list(range(1, 41))


def test_lm_entry_trains_saves_plots_and_evaluates(tmp_path, capsys):
    out = tmp_path / "lm"
    args = ["train.max_steps=12", "train.checkpoint_every=6", "schedule.warmup_steps=2", "eval.every=6",
            "eval.max_batches=2", "train.batch_size=8", "train.log_every=3"]
    assert main(["train", "xlstm-shakespeare-char", *args, "--out", str(out)]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = read_metrics(out / "metrics.jsonl")
    assert {"step", "loss", "lr", "tokens_per_s"} <= set(records[0]) and records[0]["tokens_per_s"] > 0
    assert [r["step"] for r in records if "val_loss" in r] == [6, 12]
    assert records[-1]["val_loss"] < records[0]["loss"] < 5.0  # learnt something from ln(128) = 4.85
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = build_model(f"local-dir:{out / 'model'}")
    saved = build_model("xlstm-shakespeare-char")
    load_weights(out / "checkpoints" / "step-00000012", saved)
    state = saved.state_dict()
    assert all(torch.equal(p, state[n]) for n, p in model.state_dict().items())
    assert_carries_its_tokenizer(out, "First Citizen:\nBefore we proceed any further, hear me speak.")
    assert main(["eval", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["val_loss"] == pytest.approx(final["val_loss"], rel=1e-5)
    assert 0 < metrics["val_accuracy"] < 1
    # A recipe with no training steps evaluates the weights it names (how reproduce checks released weights).
    recipe = str(out / "recipe.yaml")
    assert main(["train", recipe, "train.max_steps=0", f"model.name=local-dir:{out / 'model'}", "--out",
                 str(tmp_path / "eval-only")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == pytest.approx({**final, "step": 0})


def assert_carries_its_tokenizer(run: Path, text: str) -> None:
    """The run's model/ holds the recipe's tokenizer: the checkpoint's default one (what lm-eval and `eval --data`
    use for local-dir:RUN/model) has the same ids and decodes them back to the text."""
    recipe = load_tokenizer(recipe_tokenizer(load_recipe(run / "recipe.yaml").data))
    found = load_tokenizer(None, build_for_eval(f"local-dir:{run / 'model'}")[1])
    ids = recipe.encode(text)
    assert found.encode(text) == ids and found.decode(ids) == text == recipe.decode(ids)
    assert (found.vocab_size, found.eos_id) == (recipe.vocab_size, recipe.eos_id)


def test_a_byte_run_carries_its_tokenizer(tmp_path, capsys):
    out = tmp_path / "byte"
    assert main(["train", "xlstm-shakespeare-byte", "train.max_steps=2", "train.batch_size=2", "eval.max_batches=1",
                 "schedule.warmup_steps=1", "--out", str(out)]) == 0
    assert_carries_its_tokenizer(out, "Sonnet 18 \u2014 Shall I compare thee to a summer\u2019s day? \U0001f600")
    text = tmp_path / "text.txt"
    text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n")
    capsys.readouterr()
    for tokenizer in ([], ["--tokenizer", "byte"]):  # by default the checkpoint's own
        assert main(["eval", f"local-dir:{out / 'model'}", "--data", str(text), *tokenizer]) == 0
    default, byte = ({k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
                     for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert default["tokens"] == len(text.read_bytes()) and default == byte


def test_bf16_autocast_trains(tmp_path):
    assert main(["train", PARITY, *SMALL, "train.max_steps=3", "train.precision=bf16", "--out", str(tmp_path)]) == 0
    assert all(0 < loss < 5 for loss in losses(tmp_path).values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one(tmp_path):
    args = [PARITY, *SMALL, "train.max_steps=6", "train.checkpoint_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port()), "-m", "xlstm_zoo.registry.cli"]
    # DDP with 2 micro-batches per step (no_sync on the first) against one process taking the whole batch
    subprocess.run([*torchrun, "train", *args, "train.grad_accum_steps=2", "--out", str(tmp_path / "two")], env=env,
                   check=True, capture_output=True)
    subprocess.run(cli("train", *args, "--out", str(tmp_path / "one")), env=env, check=True, capture_output=True)
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert list(two) == list(range(1, 7))
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    assert one[6] != one[1]
