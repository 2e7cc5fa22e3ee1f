"""Checkpoint directories: save, verify, resolve offline from the Hugging Face cache, and load lazily.

The on-disk contract is transformers': `config.json` + `model.safetensors` (or shards) +
`model.safetensors.index.json`, so transformers loads what we write. Next to it lie `zoo.yaml` (our full
typed config) and, in the index metadata, the sha256 of every file; the index is written last, so it
is the commit point of a save: a crash before it leaves hashes that no longer match, never a
half-written checkpoint that loads. Nothing here unpickles: `.bin`/`.pt` files are read with
`torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from pydantic import BaseModel
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from ... import __version__
from ...schemas.entry import SCHEMA_VERSION
from ...schemas.models import MODEL_SCHEMAS
from ...schemas.yaml_io import dump_yaml, load_yaml, validate_document
from ...xlstm.large import set_weight_mode, single_layout_state_dict
from ..data.files import resolve as resolve_data_file
from ..data.hub import not_cached, source_directory
from ..factory import check_fits, instantiate
from ..index import get_config
from .hf import from_hf_config, to_hf_config, transformers_fill

CONFIG_NAME = "config.json"
ZOO_CONFIG_NAME = "zoo.yaml"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"
PICKLE_WEIGHTS_NAMES = ("pytorch_model.bin", "model.pt", "model.pth")
PICKLE_INDEX_NAME = "pytorch_model.bin.index.json"
ADAPTER_CONFIG_NAME = "adapter_config.json"  # peft's; an adapter directory (checkpoints/adapters.py)
WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and DataParallel/DDP

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message names the file or the keys. A ValueError
    (bad input), so the command line prints it as one line."""


# ----------------------------------------------------------------------------------------------- files


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: Optional[str], recorded_in: Optional[Path] = None) -> None:
    """`recorded_in`: the index the digest comes from (which may be the damaged file instead)."""
    if expected is None:
        return
    where = f" in {recorded_in}" if recorded_in else ""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (its sha256 {expected} is recorded{where})")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(f"{path}: sha256 mismatch (expected {expected}, recorded{where or ' for it'}; got "
                              f"{actual}); the file is corrupted, truncated or was replaced"
                              + (", or the index is damaged" if recorded_in else ""))


def write_staged(path: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a temporary name beside `path` and flush it to disk; returns that name (the
    caller renames it into place, or removes it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the checkpoint from other users
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)` on a temporary name beside `path`, flush it to disk, then rename it into place."""
    tmp = write_staged(path, write)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def parse_size(size: Union[int, str]) -> int:
    """Bytes from an int or a string such as '5GB', '500MiB', '10KB'."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", size, re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size: expected bytes as an int or e.g. '5GB', got {size!r}")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " KMGT".index(unit.upper() or " "))


# ----------------------------------------------------------------------------------------------- config


def dump_zoo_yaml(config) -> str:
    """zoo.yaml: the fully resolved model config, with the schema and package versions that wrote it."""
    return dump_yaml({"schema_version": SCHEMA_VERSION, "xlstm_zoo_version": __version__,
                      "model": config.model_dump(mode="json")})


def load_zoo_yaml(path: Path):
    doc = load_yaml(path)
    model = doc.data.get("model") if isinstance(doc.data, dict) else None
    kind = model.get("kind") if isinstance(model, dict) else None
    schema = MODEL_SCHEMAS.get(kind)
    if schema is None:
        raise CheckpointError(f"{path}: expected model.kind one of {', '.join(map(repr, MODEL_SCHEMAS))}, got {kind!r}")
    return validate_document(schema, doc, prefix=("model",))


# ----------------------------------------------------------------------------------------------- save


def _shards(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


def _cpu_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every state_dict entry (xLSTM Large in the single layout), contiguous on CPU. A tensor shared by
    several names (a tied head) is written under each name: transformers' xLSTM does not tie and reads both."""
    written: set[tuple] = set()
    tensors = {}
    for name, tensor in single_layout_state_dict(model).items():
        if tensor.is_meta:
            raise CheckpointError(f"cannot save {name}: the model still has weights on the meta device")
        tensor = tensor.detach().to("cpu").contiguous()
        key = (tensor.data_ptr(), tensor.shape)  # loaded tensors are views of one shard: compare views
        tensors[name] = tensor.clone() if key in written else tensor
        written.add(key)
    return tensors


_LEFTOVER = re.compile(r"\.(zoo\.yaml|config\.json|model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)\..+\.tmp")
"""Temporary files of a save_pretrained that was killed while writing (write_staged's names)."""


def save_pretrained(model: nn.Module, directory: PathLike, *, max_shard_size: Union[int, str] = "5GB") -> Path:
    """Write `model` as a transformers-style directory that both we and (for xLSTM Large) transformers load.

    Every file is first written whole under a temporary name; only then are they renamed into place,
    `model.safetensors.index.json` (which records every file's sha256) last. So a save that fails or is
    killed while writing leaves an earlier checkpoint in the same directory as it was. Weight files of that
    earlier save which the new index does not list are removed, and so are temporary files a killed save
    left behind.
    """
    if not isinstance(getattr(model, "config", None), BaseModel):
        raise TypeError(f"save_pretrained: expected a model built by xlstm_zoo (it carries its config), got "
                        f"{type(model).__name__}")
    if getattr(model, "quantization", None):
        raise ValueError(f"save_pretrained: the model's weights are quantized ({model.quantization}); save the "
                         "unquantized model and quantize when building (build_model(..., quantize=...))")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.iterdir():
        if _LEFTOVER.fullmatch(path.name):
            path.unlink()
    config = model.config
    zoo_text = dump_zoo_yaml(config)
    metadata = {"format": "pt", "xlstm_zoo_version": __version__,
                "config_sha256": hashlib.sha256(zoo_text.encode()).hexdigest()}
    staged: dict[str, Path] = {}  # final name -> its written temporary file
    files: dict[str, str] = {}  # final name -> sha256

    def stage(name: str, write: Callable[[Path], None]) -> None:
        staged[name] = write_staged(directory / name, write)
        files[name] = sha256_file(staged[name])

    try:
        for name, text in ((ZOO_CONFIG_NAME, zoo_text),
                           (CONFIG_NAME, json.dumps(to_hf_config(model), indent=2, sort_keys=True) + "\n")):
            stage(name, lambda tmp, text=text: tmp.write_text(text))
        tensors = _cpu_tensors(model)
        shards = _shards(tensors, parse_size(max_shard_size))
        names = ([SAFE_WEIGHTS_NAME] if len(shards) == 1 else
                 [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
        weight_map = {}
        for name, shard in zip(names, shards):
            stage(name, lambda tmp, shard=shard: save_file(shard, str(tmp), metadata=metadata))
            weight_map.update(dict.fromkeys(shard, name))
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values()),
                              "xlstm_zoo_version": __version__, "sha256": dict(files)},
                 "weight_map": weight_map}
        stage(SAFE_INDEX_NAME, lambda tmp: tmp.write_text(json.dumps(index, indent=2) + "\n"))
        for name, tmp in staged.items():  # dicts keep insertion order: the index last
            os.replace(tmp, directory / name)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    stale = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors")
    for path in directory.iterdir():
        if stale.fullmatch(path.name) and path.name not in files:
            path.unlink()
    return directory


def save_tokenizer(tokenizer, directory: PathLike) -> None:
    """Write a data tokenizer (data.tokenizers: anything with `files()`) into a checkpoint directory, each file
    atomically: the checkpoint's default tokenizer (its tokenizer.json) is then the one it was trained with."""
    for name, text in tokenizer.files().items():
        _write_text(Path(directory) / name, text)


# ----------------------------------------------------------------------------------------------- read


def _read_pickle_free(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # UnpicklingError for foreign objects; RuntimeError for damaged archives
        raise CheckpointError(
            f"{path}: refused: it is not a plain tensor state_dict readable with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Pickled code is never run; "
            "convert the file to safetensors in an environment you trust") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensor names to tensors")
    return state


def header_names(path: Path) -> list[str]:
    """Tensor names in a safetensors header (no data read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:  # SafetensorError: bad header
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def iter_tensors(path: PathLike) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of one weight file, one tensor in memory at a time for safetensors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        except CheckpointError:
            raise
        except Exception as exc:  # SafetensorError: bad header, truncated data, ...
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    elif path.suffix in (".bin", ".pt", ".pth"):
        yield from _read_pickle_free(path).items()
    else:
        raise CheckpointError(f"{path}: unknown weight file type (expected .safetensors, .bin, .pt or .pth)")


@dataclass
class WeightFiles:
    """The weight files of a checkpoint directory and the sha256 recorded for its files."""

    files: list[Path]
    sha256: dict[str, Optional[str]] = field(default_factory=dict)
    index: Optional[Path] = None
    weight_map: dict[str, str] = field(default_factory=dict)
    """Tensor name -> file name, as the index records it."""

    def check(self) -> None:
        """Every file the index lists exists and holds exactly the tensors the index says it holds."""
        for file in self.files:
            if not file.is_file():
                raise CheckpointError(f"{self.index}: lists {file.name}, which is not in {file.parent}")
        for file in self.files:
            if file.suffix != ".safetensors" or self.index is None:
                continue
            listed = {name for name, held_in in self.weight_map.items() if held_in == file.name}
            stored = set(header_names(file))
            if listed != stored:
                diff = sorted(listed ^ stored)[0]
                raise CheckpointError(f"{self.index}: its weight_map does not match the tensors of {file.name} "
                                      f"(e.g. {diff!r} is {'listed but not stored' if diff in listed else 'stored but not listed'})")


def read_json(path: Path) -> dict:
    """A JSON object from a checkpoint file; anything else is a CheckpointError naming the file."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_index(path: Path) -> WeightFiles:
    """The weight files an index maps tensors to (file names in the same directory) and its sha256 records."""
    index = read_json(path)
    weight_map, metadata = index.get("weight_map"), index.get("metadata", {})
    sha256 = metadata.get("sha256", {}) if isinstance(metadata, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(v, str) and v and Path(v).name == v for v in weight_map.values()):
        raise CheckpointError(f"{path}: expected `weight_map` to map tensor names to file names in its directory")
    if not isinstance(sha256, dict) or not all(isinstance(k, str) and Path(k).name == k and (v is None or isinstance(
            v, str)) for k, v in sha256.items()):
        raise CheckpointError(f"{path}: expected `metadata.sha256` to map file names to hex digests")
    return WeightFiles([path.parent / n for n in sorted(set(weight_map.values()))], dict(sha256), path, weight_map)


def find_weight_files(directory: Path) -> WeightFiles:
    for index_name in (SAFE_INDEX_NAME, PICKLE_INDEX_NAME):
        if (directory / index_name).is_file():
            return _read_index(directory / index_name)
    for name in (SAFE_WEIGHTS_NAME, *PICKLE_WEIGHTS_NAMES):
        if (directory / name).is_file():
            return WeightFiles([directory / name])
    raise CheckpointError(f"{directory}: no weights found (looked for {SAFE_INDEX_NAME}, {SAFE_WEIGHTS_NAME}, "
                          f"{PICKLE_INDEX_NAME}, {', '.join(PICKLE_WEIGHTS_NAMES)})")


# ----------------------------------------------------------------------------------------------- load


def strip_wrapper_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


@dataclass
class LoadReport:
    """What did not fit when loading a checkpoint into a model."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def table(self, first: int = 5) -> str:
        rows = []
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("mismatched", self.mismatched)):
            if names:
                more = f", ... (+{len(names) - first})" if len(names) > first else ""
                rows.append(f"  {label:<11} {len(names):>5}  {', '.join(names[:first])}{more}")
        return "\n".join(rows)


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = getattr(module, attr)
    if old.is_meta:
        value = value.to(dtype=old.dtype if old.is_floating_point() and value.is_floating_point() else value.dtype)
        if attr in module._parameters:
            module._parameters[attr] = nn.Parameter(value, requires_grad=old.requires_grad)
        else:
            module._buffers[attr] = value
    else:
        with torch.no_grad():
            old.copy_(value)


def load_tensors(model: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], *, strict: bool = True,
                 device: Optional[Union[str, torch.device]] = None, source: str = "checkpoint",
                 fill: Optional[dict[str, torch.Tensor]] = None) -> LoadReport:
    """Put named tensors into `model`, one at a time; parameters still on meta are replaced (no double copy).

    Wrong shapes (and tied names given different tensors) are always an error; missing and unexpected
    names are errors when strict. Tied parameters are filled once and stay tied. `fill` gives tensors
    for names the checkpoint may lack (used only where it does).
    """
    initial = model.state_dict(keep_vars=True)
    aliases: dict[int, list[str]] = {}
    for name, tensor in initial.items():
        aliases.setdefault(id(tensor), []).append(name)
    group_of = {name: names for names in aliases.values() for name in names}
    expected = {name: tuple(t.shape) for name, t in initial.items()}
    report, seen = LoadReport(), set()
    for raw_name, tensor in tensors:
        name = strip_wrapper_prefixes(raw_name)
        if name not in expected:
            report.unexpected.append(name)
            continue
        if tuple(tensor.shape) != expected[name]:
            report.mismatched.append(f"{name} {tuple(tensor.shape)} vs model {expected[name]}")
            seen.update(group_of[name])  # present, so not also missing
            continue
        if tensor.is_floating_point() != initial[name].is_floating_point():
            report.mismatched.append(f"{name} stored as {str(tensor.dtype).removeprefix('torch.')}, model "
                                     f"{str(initial[name].dtype).removeprefix('torch.')}")
            seen.update(group_of[name])
            continue
        group = group_of[name]
        if seen.intersection(group):  # a tied name whose tensor is loaded: the copies must agree
            loaded = model.get_parameter(group[0])
            if not torch.equal(loaded, tensor.to(loaded)):
                report.mismatched.append(f"{name} differs from {group[0]}, to which the model ties it")
            continue
        _put(model, group, tensor if device is None else tensor.to(device))
        seen.update(group)
    for name, tensor in (fill or {}).items():
        if name not in seen:
            _put(model, group_of[name], tensor if device is None else tensor.to(device))
            seen.add(name)
    report.missing = [n for n in expected if n not in seen]
    current = model.state_dict(keep_vars=True)
    on_meta = any(current[n].is_meta for n in report.missing)  # placeholders cannot run, whatever `strict` says
    if report.mismatched or (strict and report) or on_meta:
        raise CheckpointError(f"{source} does not fit the model ({type(model).__name__}):\n{report.table()}")
    return report


def _put(model: nn.Module, group: list[str], value: torch.Tensor) -> None:
    """Load `value` under the first name of a tie group and point the other names at it."""
    _set_tensor(model, group[0], value)
    for other in group[1:]:
        module_name, _, attr = other.rpartition(".")
        model.get_submodule(module_name)._parameters[attr] = model.get_parameter(group[0])


def load_checkpoint(model: nn.Module, path: PathLike, strict: bool = True, *,
                    sha256: Optional[dict[str, Optional[str]]] = None,
                    device: Optional[Union[str, torch.device]] = None,
                    fill: Optional[dict[str, torch.Tensor]] = None) -> LoadReport:
    """Load a weight file or a checkpoint directory into `model` (after verifying recorded sha256).

    `sha256` adds expected digests by file name (e.g. from a zoo entry) to those the directory records.
    """
    path = Path(path)
    if path.is_dir():
        found = find_weight_files(path)
        digests = {**found.sha256, **(sha256 or {})}
        for name, digest in _progress(list(digests.items()), "verifying sha256"):
            verify_sha256(path / name, digest, found.index if found.sha256.get(name) == digest else None)
        found.check()
        files = found.files
    else:
        verify_sha256(path, (sha256 or {}).get(path.name))
        files = [path]
    tensors = (item for file in _progress(files, "loading shards") for item in iter_tensors(file))
    # An xLSTM Large checkpoint loads into either weight mode: into its own layout, then converted.
    wanted = getattr(getattr(model, "config", None), "weight_mode", None)
    stored = _stored_weight_mode(files) if wanted else None
    if not stored or stored == wanted:
        return load_tensors(model, tensors, strict=strict, device=device, source=str(path), fill=fill)
    set_weight_mode(model, stored)
    try:
        return load_tensors(model, tensors, strict=strict, device=device, source=str(path), fill=fill)
    finally:
        set_weight_mode(model, wanted)


def _progress(items: list, desc: str):
    """A progress bar over checkpoint files when there are several (XLSTM_ZOO_PROGRESS=0 turns it off)."""
    return tqdm(items, desc=desc, unit="file", disable=len(items) < 2 or os.environ.get("XLSTM_ZOO_PROGRESS") == "0")


def _stored_dtype(files: list[Path]) -> Optional[torch.dtype]:
    """The dtype of the first floating tensor of a safetensors file, read from the header only."""
    first = files[0]
    if first.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(first), framework="pt") as f:
            for name in f.keys():
                dtype = f.get_slice(name).get_dtype()
                if dtype in ("F32", "F16", "BF16", "F64"):
                    return {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                            "F64": torch.float64}[dtype]
    except Exception as exc:
        raise CheckpointError(f"{first}: not a readable safetensors file ({exc})") from exc
    return None


def _stored_weight_mode(files: list[Path]) -> Optional[str]:
    """"fused" or "single" for xLSTM Large safetensors weights, from the tensor names in the headers."""
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    if name.endswith(("qkv_opreact.weight", "proj_up_gate_z.weight")):
                        return "fused"
                    if name.endswith(("mlstm_layer.q.weight", "ffn.proj_up.weight")):
                        return "single"
    return None


def read_config(directory: Path):
    """Our config from `zoo.yaml`, else from a transformers `config.json`."""
    if (directory / ZOO_CONFIG_NAME).is_file():
        return load_zoo_yaml(directory / ZOO_CONFIG_NAME)
    if (directory / CONFIG_NAME).is_file():
        return from_hf_config(read_json(directory / CONFIG_NAME),
                                      source=str(directory / CONFIG_NAME))
    raise CheckpointError(f"{directory}: no {ZOO_CONFIG_NAME} or {CONFIG_NAME}: not a checkpoint directory")


def _build_and_load(config, directory: Path, *, device, dtype, strict: bool, sha256, overrides=None) -> nn.Module:
    """Build `config` on the meta device and fill it from `directory`, one tensor at a time.

    Each tensor replaces its meta placeholder as it is read, so peak host memory stays near one copy
    of the weights in the target dtype (default: the dtype the weights are stored in).
    """
    found = find_weight_files(directory)
    found.check()  # before the first file is opened for its dtype
    dtype = dtype or _stored_dtype(found.files) or torch.get_default_dtype()
    model = instantiate(get_config(config, overrides), device="meta", dtype=dtype)
    check_fits(model, device, dtype)
    from_transformers = not (directory / ZOO_CONFIG_NAME).is_file() and model.config.kind == "xlstm-large-lm"
    fill = transformers_fill(model.config) if from_transformers else None
    load_checkpoint(model, directory, strict=strict, sha256=sha256, device=device, fill=fill)
    return model.eval()


def load_model_dir(path: PathLike, *, device: Optional[Union[str, torch.device]] = None,
                   dtype: Optional[torch.dtype] = None, strict: bool = True,
                   sha256: Optional[dict[str, Optional[str]]] = None, overrides=None) -> nn.Module:
    """The model a checkpoint directory describes (its zoo.yaml, else its config.json), with its weights."""
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory")
    return _build_and_load(read_config(directory), directory, device=device, dtype=dtype, strict=strict,
                           sha256=sha256, overrides=overrides)


# ----------------------------------------------------------------------------------------------- sources


def resolve_source(source: str, *, revision: Optional[str] = None,
                   files: Optional[Iterable[str]] = None) -> Path:
    """The local directory of a weights source: `local-dir:PATH`, `zoo-data:NAME` (shipped in the package's
    zoo/data) or `hf-hub:ORG/NAME[@REVISION]`.

    The hub is never contacted (data.hub): the snapshot must be in the local Hugging Face cache with a config
    and every weight file. `files` names files that must be there besides (e.g. a zoo entry's list).
    """
    if source.startswith("zoo-data:"):
        path = resolve_data_file(source)
        if not path.is_dir():
            raise CheckpointError(f"{source}: {path} is not a directory")
        return path
    try:
        if not source.startswith("hf-hub:"):
            return source_directory(source)
        snapshot = source_directory(source, [CONFIG_NAME, *(files or [])], revision)
        try:
            missing = [p.name for p in find_weight_files(snapshot).files if not p.is_file()]
        except CheckpointError:
            missing = [f"{SAFE_WEIGHTS_NAME} or {SAFE_INDEX_NAME} and its shards"]
        if missing:
            raise not_cached(source[len("hf-hub:"):].partition("@")[0], missing, snapshot)
        return snapshot
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(str(e)) from None


def source_digests(source: str) -> dict[str, str]:
    """sha256 by file name of what a checkpoint directory source (`local-dir:`, `hf-hub:`, `zoo-data:`) holds:
    its config and weight files (an adapter directory: all its files). What identifies the weights a run or an
    adapter was built on, so that a resume or a later load can tell that they changed. Digests an index
    records are taken as they are (loading verifies them), a Hugging Face cache blob is named by its own;
    other files are read."""
    directory = resolve_source(source)
    if (directory / ADAPTER_CONFIG_NAME).is_file():
        files, recorded = sorted(p for p in directory.iterdir() if p.is_file()), {}
    else:
        found = find_weight_files(directory)
        files = [directory / n for n in (ZOO_CONFIG_NAME, CONFIG_NAME) if (directory / n).is_file()] + found.files
        recorded = found.sha256

    def digest(path: Path) -> str:
        blob = Path(os.path.realpath(path)).name
        return recorded.get(path.name) or (blob if re.fullmatch(r"[0-9a-f]{64}", blob) else sha256_file(path))

    return {path.name: digest(path) for path in files}


def changed_files(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """What differs between two `source_digests`, said per file."""
    return [f"{name}: " + ("missing now" if name not in now else "new" if name not in recorded else
                           f"sha256 {recorded[name][:12]}... then, {now[name][:12]}... now")
            for name in sorted(recorded.keys() | now.keys()) if recorded.get(name) != now.get(name)]


def load_pretrained(config, weights, *, device=None, dtype=None, strict: bool = True) -> nn.Module:
    """A zoo entry's model (`config`, which the checkpoint must fit) with its weights (a `WeightsSpec`).

    The source is resolved offline and each file listed with a sha256 is verified.
    """
    directory = resolve_source(weights.source, revision=weights.revision, files=list(weights.files))
    return _build_and_load(config, directory, device=device, dtype=dtype, strict=strict, sha256=dict(weights.files))
