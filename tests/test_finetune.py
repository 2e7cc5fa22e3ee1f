"""LoRA fine-tuning through peft: a run from a checkpoint trains only the adapter, saves it in peft's layout,
loads back onto its base, and merges into a plain checkpoint that computes the same logits; instruction data
puts the loss on the response tokens only.

One training run (a 2-block xLSTM Large base, 64 wide, fused weights, byte tokens) serves the run's tests."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import xlstm_zoo
from xlstm_zoo import build_model, save_pretrained
from xlstm_zoo.registry.checkpoints import adapters, save_tokenizer
from xlstm_zoo.registry.cli import main
from xlstm_zoo.registry.data import IGNORE, make_task
from xlstm_zoo.registry.data.batch import step_rng
from xlstm_zoo.registry.data.tokenizers import HFTokenizer
from xlstm_zoo.registry.pipelines import checkpoint
from xlstm_zoo.registry.pipelines.metrics import read_metrics
from xlstm_zoo.schemas import ConfigError
from xlstm_zoo.schemas.recipe import InstructionData, LoRA, Recipe
from xlstm_zoo.schemas.yaml_io import load_yaml, validate_document

from test_pipelines_distributed import ENV, torchrun
from test_pipelines_train import losses

TINY_LARGE = {"model.embedding_dim": 64, "model.num_heads": 2, "model.num_blocks": 2, "model.vocab_size": 256,
              "model.kernels.mode": "train"}
STEPS = 30


def sums(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": f"{a}+{b}=", "response": f"{a + b};"}
            for a, b in ((rng.randint(0, 99), rng.randint(0, 99)) for _ in range(count))]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A LoRA run of a saved checkpoint (fused weight mode) on prompt/response sums."""
    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    base = build_model("xlstm-7b", overrides=TINY_LARGE)
    assert base.config.weight_mode == "fused"
    save_pretrained(base, root / "base")
    write_jsonl(root / "sums.jsonl", sums(240))
    (root / "lora.yaml").write_text(f"""
model: {{name: "local-dir:{root / 'base'}"}}
data: {{kind: instructions, files: [sums.jsonl], tokenizer: byte, context_length: 32}}
optimizer: {{lr: 1.0e-2, weight_decay: 0.0}}
train: {{max_steps: {STEPS}, batch_size: 16, log_every: 1}}
eval: {{batch_size: 64}}
adapter: {{kind: lora, rank: 4, alpha: 8}}
""")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(root / "lora.yaml"), "--out", str(root / "run")]) == 0
    finally:
        torch.set_num_threads(threads)
    return root


def trained_weights(run: Path) -> dict[str, torch.Tensor]:
    """The weights of the run's final checkpoint (the in-memory model at the end of training), by name."""
    model = build_model(f"local-dir:{run / 'run' / 'model'}")  # the same modules as the trained model
    folder = run / "run" / "checkpoints" / f"step-{STEPS:08d}"
    if hasattr(checkpoint, "load_weights"):  # sharded torch.distributed.checkpoint folders
        checkpoint.load_weights(folder, model)
    else:
        model.load_state_dict(torch.load(folder / "trainer.pt", weights_only=True)["model"])
    return model.state_dict()


def test_only_the_adapter_trains_and_the_loss_falls(run):
    trained = trained_weights(run)
    base = load_file(run / "base" / "model.safetensors")

    def in_model(name: str) -> str:  # peft moves a target's weight to <module>.base_layer
        module, _, leaf = name.rpartition(".")
        return f"{module}.base_layer.{leaf}" if f"{module}.base_layer.{leaf}" in trained else name

    adapter = {n for n in trained if ".lora_" in n}
    assert set(trained) == adapter | {in_model(n) for n in base}
    for name, tensor in base.items():
        assert torch.equal(trained[in_model(name)], tensor), f"{name} changed"  # bit for bit
    lora_b = [trained[n] for n in adapter if ".lora_B." in n]
    assert len(lora_b) == 10 and all(t.abs().max() > 0 for t in lora_b)  # 5 projections x 2 blocks, all moved
    losses = [r["loss"] for r in read_metrics(run / "run" / "metrics.jsonl") if "loss" in r]
    assert len(losses) == STEPS and sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_two_fsdp_processes_train_the_adapter_as_one_process_does(run, tmp_path):
    """LoRA under FSDP2 (gloo, 2 processes): the frozen base is sharded like the adapter; same losses and
    adapter as the one-process run (float32 sums in another order only), saved from the gathered weights."""
    out = tmp_path / "fsdp"
    proc = subprocess.run(torchrun(str(run / "lora.yaml"), "train.strategy=fsdp", "--out", str(out)),
                          env=ENV, capture_output=True, text=True, cwd=run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert losses(out) == pytest.approx(losses(run / "run"), rel=1e-4)
    one, two = (load_file(d / "model" / "adapter_model.safetensors") for d in (run / "run", out))
    assert one.keys() == two.keys()
    assert all(torch.allclose(one[k], two[k], rtol=0, atol=1e-5) for k in one)
    assert json.loads((out / "model" / "zoo_adapter.json").read_text())["base"] == \
        json.loads((run / "run" / "model" / "zoo_adapter.json").read_text())["base"]
    # its adapter-only checkpoint, written by 2 FSDP processes, resumes in one plain process (finished: nothing
    # more to train, model/ written again from the checkpoint's adapter)
    (out / "model" / "adapter_model.safetensors").unlink()
    assert main(["train", str(run / "lora.yaml"), "--out", str(out), "--resume"]) == 0
    again = load_file(out / "model" / "adapter_model.safetensors")
    assert again.keys() == two.keys() and all(torch.equal(again[k], two[k]) for k in two)


def test_adapter_dir_is_peft_layout_and_small(run):
    model_dir = run / "run" / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json", "zoo_adapter.json"]
    config = json.loads((model_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["base_model_name_or_path"] == f"local-dir:{(run / 'base').resolve()}"
    assert len(config["target_modules"]) == 10 and all(
        m.rsplit(".", 1)[1] in ("q", "k", "v", "ogate_preact", "out_proj") for m in config["target_modules"])
    keys = load_file(model_dir / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.backbone.blocks.") and k.endswith(("lora_A.weight", "lora_B.weight"))
               for k in keys)
    size = (model_dir / "adapter_model.safetensors").stat().st_size
    assert size < 0.1 * (run / "base" / "model.safetensors").stat().st_size


def test_build_model_loads_base_plus_adapter_and_merge_matches(run, capsys):
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    base = build_model(f"local-dir:{run / 'base'}")
    tuned = build_model(f"local-dir:{run / 'run' / 'model'}")
    trained = trained_weights(run)
    assert all(torch.equal(p, trained[n]) for n, p in tuned.named_parameters())
    assert [n for n, p in tuned.named_parameters() if p.requires_grad] == [n for n in trained if ".lora_" in n]
    assert main(["eval", str(run / "run")]) == 0  # the run's recipe on base + adapter: the run's last validation
    final = [r for r in read_metrics(run / "run" / "metrics.jsonl") if "val_loss" in r][-1]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["val_loss"] == pytest.approx(
        final["val_loss"], rel=1e-6)
    assert main(["merge", str(run / "run" / "model"), "--out", str(run / "merged")]) == 0
    merged = build_model(f"local-dir:{run / 'merged'}")
    assert merged.config.weight_mode == "fused"  # the base's layout again, for inference
    assert not any(".lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        want, got, before = tuned(ids).logits, merged(ids).logits, base(ids).logits
    # float32 throughout: folding B A into W reorders one sum per output, ~1e-7 relative
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (want - before).abs().max() > 1e-2  # the adapter changed what the model computes


def test_merge_refuses_what_is_not_a_whole_adapter(run, tmp_path, capsys):
    assert main(["merge", str(run / "base"), "--out", str(tmp_path / "m")]) == 2
    assert "not an adapter directory" in capsys.readouterr().err
    shutil.copytree(run / "run" / "model", tmp_path / "adapter")
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    assert main(["merge", str(tmp_path / "adapter"), "--out", str(tmp_path / "m")]) == 1
    assert "adapter_model.safetensors: sha256 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


class Crash(RuntimeError):
    pass


def test_a_resumed_lora_run_ends_like_the_uninterrupted_one_from_adapter_only_checkpoints(run, tmp_path, monkeypatch):
    """The run fixture's recipe, stopped right after its step-10 checkpoint and resumed: the same losses and final
    weights bit for bit (one thread, as the fixture). The checkpoint holds only the adapter and its optimizer
    state: the frozen base comes back from the recipe's base source."""
    save = checkpoint.save

    def save_then_crash(root, step, *args):
        folder = save(root, step, *args)
        if step == 10:
            raise Crash(folder)
        return folder

    args = ["train", str(run / "lora.yaml"), "train.checkpoint_every=10", "--out", str(tmp_path)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monkeypatch.setattr(checkpoint, "save", save_then_crash)
        with pytest.raises(Crash) as crashed:
            main(args)
        stored = checkpoint.stored_keys(crashed.value.args[0])
        monkeypatch.setattr(checkpoint, "save", save)
        assert main([*args, "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    names = {key.split(".", 1)[0] for key in stored}
    assert names == {"model", "optimizer"} and all(".lora_" in key for key in stored), sorted(stored)[:5]
    assert len([k for k in stored if k.startswith("model.")]) == 20  # A and B of 5 projections x 2 blocks
    straight = [r for r in read_metrics(run / "run" / "metrics.jsonl") if "loss" in r]
    resumed = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert [(r["step"], r["loss"]) for r in resumed] == [(r["step"], r["loss"]) for r in straight]
    final = trained_weights(run)
    tuned = build_model(f"local-dir:{tmp_path / 'model'}")
    assert all(torch.equal(p, final[n]) for n, p in tuned.state_dict().items())


def _perturbed_copy(base: Path, to: Path) -> None:
    """`base` saved again at `to` with one weight changed (same names, shapes, config)."""
    model = build_model(f"local-dir:{base}")
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    save_pretrained(model, to)


def test_an_adapter_refuses_a_base_changed_after_it_was_saved(run, tmp_path, capsys):
    """The adapter records its base's digests (those the base's index holds); loading it onto a base re-saved
    with other weights names the changed file instead of silently computing something else."""
    shutil.copytree(run / "base", tmp_path / "base")
    ref = adapters.ModelRef(name=f"local-dir:{tmp_path / 'base'}")
    model = build_model(ref.name)
    adapters.apply(model, LoRA(rank=2, alpha=4))
    adapters.save(model, tmp_path / "adapter", ref)
    recorded = json.loads((tmp_path / "adapter" / adapters.BASE_NAME).read_text())["base_sha256"]
    assert set(recorded) == {"zoo.yaml", "config.json", "model.safetensors"}
    build_model(f"local-dir:{tmp_path / 'adapter'}")  # the same base: loads
    _perturbed_copy(tmp_path / "base", tmp_path / "base")
    with pytest.raises(adapters.CheckpointError, match=r"whose weights have changed since: model\.safetensors: sha256"):
        build_model(f"local-dir:{tmp_path / 'adapter'}")
    assert main(["build", f"local-dir:{tmp_path / 'adapter'}"]) == 2
    assert "whose weights have changed since" in capsys.readouterr().err


def test_resuming_a_lora_run_refuses_a_changed_base(run, tmp_path, monkeypatch, capsys):
    """The run records its base's digests; a resume, which reads the frozen base again, refuses another one."""
    shutil.copytree(run / "base", tmp_path / "base")
    args = ["train", str(run / "lora.yaml"), f"model.name=local-dir:{tmp_path / 'base'}", "train.max_steps=2",
            "train.checkpoint_every=1", "--out", str(tmp_path / "run")]
    save = checkpoint.save

    def save_then_crash(root, step, *rest):
        folder = save(root, step, *rest)
        raise Crash(folder)

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(Crash):
        main(args)
    monkeypatch.setattr(checkpoint, "save", save)
    _perturbed_copy(tmp_path / "base", tmp_path / "base")
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"the run in {tmp_path / 'run'} was made on local-dir:{tmp_path / 'base'}" in err
    assert "model.safetensors: sha256" in err and "zoo.yaml" not in err


def test_target_modules_defaults_patterns_and_errors():
    neurips = build_model("xlstm-125m-7-1", overrides={"model.num_blocks": 2, "model.slstm_at": [1],
                                                        "model.embedding_dim": 64, "model.vocab_size": 32})
    assert adapters.target_modules(neurips, None) == ["xlstm_block_stack.blocks.0.xlstm.proj_up",
                                                      "xlstm_block_stack.blocks.0.xlstm.proj_down"]
    large = build_model("xlstm-7b", overrides=TINY_LARGE | {"model.weight_mode": "single"})
    assert adapters.target_modules(large, ["blocks.1.*.q", "lm_head"]) == ["backbone.blocks.1.mlstm_layer.q",
                                                                          "lm_head"]
    with pytest.raises(ValueError) as err:
        adapters.target_modules(neurips, ["q_proj", "nothing*"])
    assert "'q_proj' selects only LinearHeadwiseExpand" in str(err.value)
    assert "'nothing*' selects no module" in str(err.value)
    adapters.apply(neurips, LoRA(rank=2))
    trainable = [n for n, p in neurips.named_parameters() if p.requires_grad]
    assert len(trainable) == 4 and all(".xlstm.proj_" in n and ".lora_" in n for n in trainable)


def test_a_fresh_base_is_refused():
    doc = load_yaml(Path(xlstm_zoo.__file__).parent / "zoo" / "recipes" / "xlstm-7b-lora.yaml")
    doc.data["model"]["pretrained"] = False
    with pytest.raises(ConfigError, match="adapter: expected a base with weights"):
        validate_document(Recipe, doc)


def test_loss_only_on_response_tokens(tmp_path):
    records = [{"prompt": "ab", "response": "cde"}, {"prompt": "", "response": "xy"},
               {"prompt": "pq", "response": "r"}, {"prompt": "long prompt", "response": "cut"}]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    task = make_task(InstructionData(files=[str(path)], tokenizer="byte", context_length=12, val_fraction=0.25))
    x, y = task._train[0]  # a target is IGNORE while the next token is still the prompt's
    assert x.tolist() == list(b"abcd") and y.tolist() == [IGNORE, *b"cde"]
    x, y = task._train[1]  # no prompt: every next token is the response's
    assert x.tolist() == list(b"x") and y.tolist() == list(b"y")
    batch = next(task.eval_batches(8))  # the held-out last record: 11 prompt bytes, the response cut to fit 12
    assert batch.inputs.tolist() == [list(b"long promptc")]
    assert batch.targets.tolist() == [[IGNORE] * 10 + list(b"cu")]
    rows = step_rng(0, 1).integers(0, len(task._train), 6)
    batch = task.train_batch(0, 1, 6)  # right-padded with input 0, target IGNORE
    width = max(len(task._train[i][0]) for i in rows)
    assert batch.inputs.shape == (6, width)
    for row, i in enumerate(rows):
        x, y = task._train[i]
        assert batch.inputs[row].tolist() == [*x.tolist(), *[0] * (width - len(x))]
        assert batch.targets[row].tolist() == [*y.tolist(), *[IGNORE] * (width - len(y))]
    with pytest.raises(ValueError, match="no response token"):
        make_task(InstructionData(files=[str(path)], tokenizer="byte", context_length=4))


def test_a_checkpoint_tokenizer_and_its_eos(tmp_path):
    """A checkpoint's own tokenizer.json (here a tiny word-level one) tokenizes, and its config's EOS ends responses;
    saved with a run's model (an adapter directory: no config.json) it keeps that EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {"[eos]": 0, "what": 1, "is": 2, "two": 3, "?": 4, "it": 5, "[unk]": 6}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="[unk]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "ckpt").mkdir()
    tokenizer.save(str(tmp_path / "ckpt" / "tokenizer.json"))
    (tmp_path / "ckpt" / "config.json").write_text('{"eos_token_id": 0}')
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "what is two ?", "response": "it is two"}] * 4)
    task = make_task(InstructionData(files=[str(path)], tokenizer=f"local-dir:{tmp_path / 'ckpt'}", context_length=16))
    x, y = task._train[0]
    assert task.vocab_size == 7
    assert x.tolist() == [1, 2, 3, 4, 5, 2, 3] and y.tolist() == [IGNORE] * 3 + [5, 2, 3, 0]
    save_tokenizer(task.tokenizer, tmp_path)
    read_back = HFTokenizer(tmp_path / "tokenizer.json")
    assert read_back.encode("what is two ?") == [1, 2, 3, 4] and read_back.eos_id == 0


def test_the_shipped_7b_lora_recipe_runs_at_small_width(run, tmp_path):
    """Two steps of zoo/recipes/xlstm-7b-lora.yaml as written (optimizer, schedule, adapter, bf16 base and
    autocast), on the small saved base instead of the 7B weights."""
    recipe = Path(xlstm_zoo.__file__).parent / "zoo" / "recipes" / "xlstm-7b-lora.yaml"
    args = [str(recipe), f"model.name=local-dir:{run / 'base'}", "model.pretrained=false",
            f"data.files=[{run / 'sums.jsonl'}]", "data.tokenizer=byte", "data.context_length=32",
            "train.batch_size=4", "train.max_steps=2", "schedule.decay_steps=1000", "train.checkpoint_every=0",
            "train.log_every=1",
            "eval.every=0", "eval.max_batches=1", "--out", str(tmp_path / "run")]
    assert main(["train", *args]) == 0
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2] and records[0]["lr"] == pytest.approx(2e-4 / 30)
    tuned = build_model(f"local-dir:{tmp_path / 'run' / 'model'}")
    assert tuned.backbone.embeddings.weight.dtype == torch.float32  # the stored base's dtype when loaded back
    config = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (16, 32, 0.1)
