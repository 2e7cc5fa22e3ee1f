"""Checkpoint directories: round trips, sharding, integrity, refusal of pickles, offline hub cache, and a
lazy load of a checkpoint with the 7B's shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from xlstm_zoo.registry.checkpoints import store as checkpoints
from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.checkpoints import (CheckpointError, load_checkpoint, load_pretrained, save_pretrained,
                                            save_tokenizer)
from xlstm_zoo.registry.data.tokenizers import ByteTokenizer, make_tokenizer
from xlstm_zoo.schemas.entry import WeightsSpec
from xlstm_zoo.schemas.models import XLSTMLMConfig


def small_model(tie: bool = True, vocab: int = 50):
    torch.manual_seed(0)
    config = XLSTMLMConfig(vocab_size=vocab, embedding_dim=32, num_blocks=2, slstm_at=[1], tie_weights=tie,
                           mlstm_block={"mlstm": {"num_heads": 2}}, slstm_block={"slstm": {"num_heads": 2}})
    return build_model(config).eval()


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_writes_the_directory_contract(tmp_path):
    model = small_model()
    save_pretrained(model, tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    recorded = index["metadata"]["sha256"]
    assert set(recorded) == {"model.safetensors", "config.json", "zoo.yaml"}
    assert all(recorded[n] == checkpoints.sha256_file(tmp_path / n) for n in recorded)
    assert "schema_version: 1" in (tmp_path / "zoo.yaml").read_text()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "xlstm_zoo"  # not transformers'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left

    loaded = build_model(f"local-dir:{tmp_path}")
    assert same_weights(model, loaded)
    assert loaded.lm_head.weight is loaded.token_embedding.weight  # still tied
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_sharded_save_and_stale_shards(tmp_path):
    model = small_model(tie=False)
    save_pretrained(model, tmp_path, max_shard_size="8KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and shards[0].endswith(f"-of-{len(shards):05d}.safetensors")
    assert same_weights(model, build_model(f"local-dir:{tmp_path}"))
    save_pretrained(model, tmp_path)  # one file now: the old shards must go
    assert not list(tmp_path.glob("model-*.safetensors"))
    assert same_weights(model, build_model(f"local-dir:{tmp_path}"))


def test_flipped_byte_and_truncation_are_refused(tmp_path):
    save_pretrained(small_model(), tmp_path)
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 mismatch"):
        build_model(f"local-dir:{tmp_path}")
    weights.write_bytes(bytes(data[: len(data) // 2]))
    (tmp_path / "model.safetensors.index.json").unlink()  # no hash recorded: the reader must notice itself
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        build_model(f"local-dir:{tmp_path}")


def test_config_that_no_longer_fits_is_refused_naming_keys(tmp_path):
    save_pretrained(small_model(tie=False), tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(zoo.read_text().replace("vocab_size: 50", "vocab_size: 60"))
    with pytest.raises(CheckpointError) as err:
        build_model(f"local-dir:{tmp_path}")
    assert "mismatched" in str(err.value) and "token_embedding.weight (50, 32) vs model (60, 32)" in str(err.value)


class Planted:
    """Unpickling this would run `open(path, "w")`: a file appearing means code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    state = {"token_embedding.weight": torch.zeros(2), "payload": Planted(str(marker))}
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused.*weights_only=True"):
        load_checkpoint(small_model(), tmp_path / "pytorch_model.bin")
    assert not marker.exists()


def test_plain_pt_with_wrapper_prefixes_loads_and_reports(tmp_path):
    model = small_model(tie=False)
    wrapped = {f"_orig_mod.module.{k}": v for k, v in model.state_dict().items()}
    torch.save(wrapped, tmp_path / "model.pt")
    fresh = small_model(tie=False)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    assert not load_checkpoint(fresh, tmp_path / "model.pt")
    assert same_weights(model, fresh)

    del wrapped["_orig_mod.module.lm_head.weight"]
    wrapped["extra.weight"] = torch.zeros(1)
    torch.save(wrapped, tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(fresh, tmp_path / "model.pt")
    assert "missing         1  lm_head.weight" in str(err.value) and "unexpected      1  extra.weight" in str(err.value)
    report = load_checkpoint(fresh, tmp_path / "model.pt", strict=False)
    assert report.missing == ["lm_head.weight"] and report.unexpected == ["extra.weight"]


def test_crash_during_save_leaves_the_earlier_checkpoint_as_it_was(tmp_path, monkeypatch):
    first = small_model(tie=False)
    save_pretrained(first, tmp_path, max_shard_size="8KB")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = []

    def crash_on_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save_file(tensors, filename, metadata=metadata)

    real_save_file = checkpoints.save_file
    monkeypatch.setattr(checkpoints, "save_file", crash_on_second)
    other = small_model(tie=False, vocab=50)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(other, tmp_path, max_shard_size="8KB")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing renamed, no temporaries
    assert same_weights(first, build_model(f"local-dir:{tmp_path}"))


def test_temporaries_of_a_killed_save_go_with_the_next_save(tmp_path):
    model = small_model()
    tmp_path.joinpath(".model.safetensors.k1ll3d.tmp").write_bytes(b"half a shard")
    tmp_path.joinpath(".notes.txt.tmp").write_text("not ours")
    save_pretrained(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".notes.txt.tmp"]
    assert same_weights(model, build_model(f"local-dir:{tmp_path}"))


def fake_hub_snapshot(cache, repo: str, source_dir) -> str:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    return commit


def test_hf_hub_resolves_offline_from_the_cache(tmp_path, monkeypatch):
    model = small_model()
    save_pretrained(model, tmp_path / "src")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_snapshot(tmp_path / "hub", "acme/tiny-xlstm", tmp_path / "src")
    assert same_weights(model, build_model("hf-hub:acme/tiny-xlstm"))

    with pytest.raises(CheckpointError) as err:
        build_model("hf-hub:acme/absent")
    message = str(err.value)
    assert "hf-hub:acme/absent" in message and "config.json" in message and str(tmp_path / "hub") in message

    with pytest.raises(FileNotFoundError) as tokenizer_err:  # one resolver: the same message
        make_tokenizer("hf-hub:acme/absent", "")
    assert str(tokenizer_err.value) == "tokenizer: " + message.replace("config.json", "tokenizer.json")

    snapshot = next((tmp_path / "hub").glob("models--acme--tiny-xlstm/snapshots/*"))
    with pytest.raises(FileNotFoundError, match=r"Looked for tokenizer\.json in .*snapshots"):
        make_tokenizer("hf-hub:acme/tiny-xlstm", "")
    save_tokenizer(ByteTokenizer(), snapshot)
    assert make_tokenizer("hf-hub:acme/tiny-xlstm", "").encode("hub") == list(b"hub")
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"Looked for model\.safetensors in .*snapshots"):
        build_model("hf-hub:acme/tiny-xlstm")


def test_source_digests_identify_a_checkpoints_files(tmp_path, monkeypatch):
    """The digests that identify a base (adapters and LoRA runs record them): those its index records, else
    read; a Hugging Face cache blob by its name (the cache names LFS blobs by their sha256), not read."""
    save_pretrained(small_model(), tmp_path / "src")
    names = ["config.json", "model.safetensors", "zoo.yaml"]
    truth = {n: checkpoints.sha256_file(tmp_path / "src" / n) for n in names}
    assert checkpoints.source_digests(f"local-dir:{tmp_path / 'src'}") == truth
    (tmp_path / "src" / "model.safetensors.index.json").unlink()  # nothing recorded: every file read
    assert checkpoints.source_digests(f"local-dir:{tmp_path / 'src'}") == truth

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_snapshot(tmp_path / "hub", "acme/tiny-xlstm", tmp_path / "src")
    snapshot = next((tmp_path / "hub").glob("models--acme--tiny-xlstm/snapshots/*"))
    blob = tmp_path / "hub" / "models--acme--tiny-xlstm" / "blobs" / ("ab" * 32)  # not the file's real digest
    blob.parent.mkdir()
    (snapshot / "model.safetensors").rename(blob)
    (snapshot / "model.safetensors").symlink_to(blob)
    assert checkpoints.source_digests("hf-hub:acme/tiny-xlstm") == {**truth, "model.safetensors": "ab" * 32}

    now = {**truth, "model.safetensors": "cd" * 32, "extra.bin": "ef" * 32}
    del now["zoo.yaml"]
    assert checkpoints.changed_files(truth, now) == [
        "extra.bin: new", f"model.safetensors: sha256 {truth['model.safetensors'][:12]}... then, cdcdcdcdcdcd... now",
        "zoo.yaml: missing now"]


def test_zoo_weights_spec_sha256_is_verified(tmp_path):
    model = small_model()
    save_pretrained(model, tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()  # only the entry's list records the digest
    digest = checkpoints.sha256_file(tmp_path / "model.safetensors")
    spec = lambda d: WeightsSpec(tag="t", source=f"local-dir:{tmp_path}", files={"model.safetensors": d},  # noqa: E731
                                 license="apache-2.0")
    assert same_weights(model, load_pretrained(model.config, spec(digest)))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_pretrained(model.config, spec("0" * 64))


LOAD_AND_MEASURE = textwrap.dedent(r"""
    import json, re, sys, torch
    from xlstm_zoo.registry.builder import build_model
    def high_water():  # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024
    base = high_water()
    model = build_model("local-dir:" + sys.argv[1])
    with torch.no_grad():
        probe = {n: [float(p.max()), float(p.min()), float(p.flatten()[-1])] for n, p in model.named_parameters()}
        logits = model(torch.tensor([[1, 2, 3]])).logits
    peak = high_water()
    print(json.dumps({"base": base, "peak": peak, "probe": probe, "finite": bool(torch.isfinite(logits).all()),
                      "meta": any(p.is_meta for p in model.parameters()), "dtype": str(model.lm_head.weight.dtype)}))
""")


def test_7b_shapes_sharded_save_and_lazy_load(tmp_path):
    """The 7B's tensor shapes (vocab 50304, D 4096, F 10944) with one block, in bfloat16 (1.2 GB)."""
    # single weight mode: the files' layout, so loading needs no conversion (which holds one block twice)
    model = build_model("xlstm-7b", overrides={"model.num_blocks": 1, "model.weight_mode": "single"}, device="meta",
                        dtype=torch.bfloat16)
    model = model.to_empty(device="cpu")
    with torch.no_grad():  # distinct values per tensor, cheap to write
        for j, p in enumerate(model.parameters()):
            p.fill_(1 + j / 64)
            p.view(-1)[-1] = -j
        probe = {n: [float(p.max()), float(p.min()), float(p.flatten()[-1])] for n, p in model.named_parameters()}
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    save_pretrained(model, tmp_path, max_shard_size="300MB")
    del model
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) >= 4

    env = {**os.environ, "PYTHONPATH": ""}
    run = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(tmp_path)], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["probe"] == probe and out["finite"] and not out["meta"] and out["dtype"] == "torch.bfloat16"
    grown = out["peak"] - out["base"]
    print(f"weights {weight_bytes / 2**30:.2f} GiB; RSS {out['base'] / 2**30:.2f} GiB after imports, "
          f"peak {out['peak'] / 2**30:.2f} GiB after loading, reading every weight and a forward pass")
    assert grown < 1.25 * weight_bytes  # one copy of the weights (+ a forward pass), never two


def test_pretrained_entry_resolves_offline_and_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError) as err:
        build_model("xlstm-7b", pretrained=True)
    message = str(err.value)
    assert "hf-hub:NX-AI/xLSTM-7b" in message and "model-00001-of-00006.safetensors" in message
    assert str(tmp_path / "models--NX-AI--xLSTM-7b") in message


def test_integer_tensor_for_a_weight_and_a_wrong_shape_are_named_once(tmp_path):
    model = small_model()
    save_pretrained(model, tmp_path)
    tensors = dict(checkpoints.iter_tensors(tmp_path / "model.safetensors"))
    tensors["lm_head.weight"] = tensors["lm_head.weight"].to(torch.int64)
    conv = "xlstm_block_stack.blocks.0.xlstm.conv1d.conv.weight"
    tensors[conv] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_tensors(small_model(), tensors.items(), source="damaged")
    table = str(err.value)
    assert "lm_head.weight stored as int64, model float32" in table and f"{conv} (3, 3) vs model" in table
    assert "missing" not in table  # a tensor of the wrong shape or kind is there, not missing


def test_save_pretrained_names_what_is_no_zoo_model(tmp_path):
    with pytest.raises(TypeError, match="expected a model built by xlstm_zoo .* got Linear"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path)
