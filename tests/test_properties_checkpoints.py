"""Property-based: a damaged checkpoint directory (bytes flipped, files truncated, safetensors headers and
JSON edited) is refused with the damaged file named, or, when the change is outside the data, loads
bit-exactly; nothing is unpickled and nothing crashes in native code.

Seeds: derandomized (examples follow from the test's name); example counts and deadlines are below
(deadlines are hang guards, loose for a loaded 2-core CI machine: an example takes milliseconds).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.checkpoints import CheckpointError, load_model_dir, save_pretrained
from xlstm_zoo.schemas import ConfigError

PROFILE = dict(derandomize=True, database=None, deadline=30000,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MODELS = {
    "neurips": {"kind": "xlstm-lm", "vocab_size": 11, "embedding_dim": 16, "num_blocks": 2, "slstm_at": [1],
                "mlstm_block": {"mlstm": {"num_heads": 2}}, "slstm_block": {"slstm": {"num_heads": 2}}},
    "large": {"kind": "xlstm-large-lm", "vocab_size": 11, "embedding_dim": 32, "num_heads": 2, "num_blocks": 2},
}


class Saved(dict):
    def __repr__(self) -> str:  # keeps Hypothesis's reports short
        return f"Saved({sorted(self)})"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each model saved twice: one file, and shards (so the index maps several files)."""
    out = Saved()
    for name, config in MODELS.items():
        torch.manual_seed(0)
        model = build_model({"model": config})
        for shards in ("1", "many"):
            directory = tmp_path_factory.mktemp(f"{name}-{shards}")
            save_pretrained(model, directory, max_shard_size="5GB" if shards == "1" else 4000)
            out[f"{name}-{shards}"] = (directory, model.state_dict())
    return out


def flip(raw: bytes, data) -> bytes:
    i = data.draw(st.integers(0, len(raw) - 1))
    return raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1:]


def edit_header(raw: bytes, data) -> bytes:
    """Edit a safetensors header: its length prefix, or one field of its JSON."""
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    how = data.draw(st.sampled_from(["length", "dtype", "shape", "offsets", "drop", "add", "metadata"]))
    if how == "length":
        value = data.draw(st.sampled_from([0, 1, n - 1, n + 1, len(raw), 2**40, 2**64 - 1]))
        return struct.pack("<Q", value) + raw[8:]
    names = sorted(k for k in header if k != "__metadata__")
    name = data.draw(st.sampled_from(names))
    if how == "dtype":
        header[name]["dtype"] = data.draw(st.sampled_from(["F16", "I64", "BOOL", "U8", "F8_E4M3", "Q4", ""]))
    elif how == "shape":
        header[name]["shape"] = data.draw(st.lists(st.sampled_from([0, 1, 3, 2**31, 2**62, -1]), max_size=3))
    elif how == "offsets":
        header[name]["data_offsets"] = data.draw(st.lists(st.sampled_from([0, 1, 7, len(raw), 2**62, -5]),
                                                          min_size=2, max_size=2))
    elif how == "drop":
        del header[name]
    elif how == "add":
        header["extra.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    else:
        header["__metadata__"] = {"format": data.draw(st.sampled_from(["pt", "np", ""]))}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def edit_json(raw: bytes, data) -> bytes:
    """A JSON file re-formatted (outside the data) or one of its values changed or deleted."""
    tree = json.loads(raw)
    how = data.draw(st.sampled_from(["reformat", "value", "delete"]))
    if how == "reformat":
        return json.dumps(tree, indent=data.draw(st.sampled_from([None, 1, 4]))).encode() + b"\n\n"
    path, node = [], tree
    while isinstance(node, dict) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node)))
        path.append(key)
        node = node[key]
    if not path:
        path = [data.draw(st.sampled_from(sorted(tree)))]
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(st.one_of(st.none(), st.integers(-2, 2**40), st.text(max_size=6),
                                               st.just([]), st.just({}), st.just("model.bin")))
    return json.dumps(tree).encode()


def no_unpickling(*args, **kwargs):
    raise AssertionError("torch.load called on a safetensors checkpoint")


@settings(max_examples=150, **PROFILE)
@given(data=st.data())
def test_damaged_checkpoints_are_refused_naming_the_file_or_load_bit_exactly(saved, tmp_path_factory, data):
    which = data.draw(st.sampled_from(sorted(saved)), label="checkpoint")
    source, reference = saved[which]
    directory = tmp_path_factory.mktemp("damaged")
    shutil.copytree(source, directory, dirs_exist_ok=True)
    file = data.draw(st.sampled_from(sorted(p.name for p in directory.iterdir())), label="file")
    path = directory / file
    raw = path.read_bytes()
    how = data.draw(st.sampled_from(["flip", "truncate", "edit"]), label="damage")
    if how == "flip":
        raw = flip(raw, data)
    elif how == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif file.endswith(".safetensors"):
        raw = edit_header(raw, data)
    elif file.endswith(".json"):
        raw = edit_json(raw, data)
    else:
        raw = raw + b"\n# a comment\n"
    path.write_bytes(raw)
    with mock.patch("torch.load", no_unpickling):
        try:
            model = load_model_dir(directory)
        except (CheckpointError, ConfigError) as e:
            assert file in str(e), f"the error does not name {file}: {e}"
            return
    loaded = model.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference), f"{file} changed the weights silently"
