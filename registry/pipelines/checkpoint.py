"""Resumable training state through torch.distributed.checkpoint: sharded, atomic, and loadable by any
number of processes and any strategy (a 2-process FSDP2 run resumes in one plain process).

A checkpoint is a folder `checkpoints/step-NNNNNNNN/` holding DCP's files for the model weights and the
optimizer's tensors (keyed by parameter name, so the layout of the run that wrote them does not matter; a model
with frozen parameters, an adapter on its base, keeps only its trainable ones: the frozen base is rebuilt from
the recipe's base source on --resume, so a 7B LoRA checkpoint holds megabytes, not the 14 GB base) and
`trainer.pt` (step, optimizer hyper-parameters, scheduler, RNG states), read with
`torch.load(weights_only=True)`. DCP's own index is a pickle; it is read with an unpickler that admits
only DCP's metadata classes, so nothing in a checkpoint can run code.
Every process writes its shards into `step-NNNNNNNN.tmp/`; only when all have finished does rank 0 add
`trainer.pt`, rename the folder and point `checkpoints/latest` at it (an atomic rename), then remove the
older folders. A run killed at any moment leaves at worst a `.tmp` folder, which nothing reads.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from .distributed import Dist

LATEST = "latest"
TRAINER = "trainer.pt"


@contextlib.contextmanager
def _quiet():
    """DCP warns that it works in a single process when no process group exists; that is intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to .* in a single process")
        yield


SAFE_GLOBALS = {("collections", "OrderedDict"), ("torch", "Size"), ("builtins", "set"),
                ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath")} | {
    ("torch", dtype) for dtype in ("float32", "bfloat16", "float16", "float64", "int64", "int32", "uint8", "bool")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("torch.distributed.checkpoint.") or (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"checkpoint metadata names {module}.{name}, which is not DCP metadata")


class _SafeReader(FileSystemReader):
    def read_metadata(self, *args, **kwargs):
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as file:
            metadata = _MetadataUnpickler(file).load()
        if getattr(metadata, "storage_meta", None) is None:
            from torch.distributed.checkpoint.metadata import StorageMeta
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


@contextlib.contextmanager
def _reading(folder: Path):
    try:
        with _quiet():
            yield
    except (Exception, CheckpointException) as e:  # DCP gathers every rank's failures into one (a BaseException)
        raise ValueError(f"{folder}: not a readable training checkpoint: {e}") from e


def _read(state: dict, folder: Path) -> None:
    with _reading(folder):
        dcp.load(state, storage_reader=_SafeReader(folder))


def _states(model: torch.nn.Module, optimizer) -> tuple[dict, dict, bool]:
    """(model state, optimizer state, whether the model state is partial) as DCP saves and loads them: all the
    model's tensors, or only its trainable parameters where some are frozen."""
    model_state, optim_state = get_state_dict(model, optimizer)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    partial = len(trainable) < len(list(model.parameters()))
    if partial:
        model_state = {k: v for k, v in model_state.items() if k in trainable}
    return model_state, optim_state, partial


def stored_keys(folder: Path) -> set[str]:
    """The names of the tensors a checkpoint folder holds (`model.NAME`, `optimizer.NAME.exp_avg`, ...)."""
    with _reading(folder):
        return set(_SafeReader(folder).read_metadata().state_dict_metadata)


def save(root: Path, step: int, finished: bool, model: torch.nn.Module, optimizer, scheduler, dist: Dist) -> Path:
    """`finished` marks the end of the run (last step or early stop), so resuming it trains no further.
    Every process calls this (a collective under ddp/fsdp)."""
    name = f"step-{step:08d}"
    tmp = root / f"{name}.tmp"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state, _ = _states(model, optimizer)
    with _quiet():
        dcp.save({"model": model_state, "optimizer": optim_state["state"]}, checkpoint_id=str(tmp))
    dist.barrier()
    if dist.main:
        torch.save({"step": step, "finished": finished, "param_groups": optim_state["param_groups"],
                    "scheduler": scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": random.getstate()}},
                   tmp / TRAINER)
        shutil.rmtree(root / name, ignore_errors=True)
        os.replace(tmp, root / name)
        pointer = root / f"{LATEST}.tmp"
        pointer.write_text(name)
        os.replace(pointer, root / LATEST)
        for old in root.iterdir():
            if old.is_dir() and old.name != name:
                shutil.rmtree(old)
    dist.barrier()
    return root / name


def latest(root: Path) -> Path | None:
    pointer = root / LATEST
    return root / pointer.read_text().strip() if pointer.exists() else None


def load(folder: Path, model: torch.nn.Module, optimizer, scheduler) -> tuple[int, bool]:
    """Restore everything `save` wrote, resharded to this run's layout; returns the step to continue after
    and whether the run had finished. Every process calls this."""
    model_state, optim_state, partial = _states(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state["state"]}
    _read(state, folder)  # every tensor asked for must be in the checkpoint
    trainer = torch.load(folder / TRAINER, weights_only=True)
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict={"state": state["optimizer"], "param_groups": trainer["param_groups"]},
                   options=StateDictOptions(strict=not partial))
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["rng"]["torch"])
    _set_numpy_state(trainer["rng"]["numpy"])
    random.setstate(trainer["rng"]["python"])
    return trainer["step"], trainer["finished"]


def load_weights(folder: Path, model: torch.nn.Module) -> None:
    """The model weights a checkpoint folder holds (all, or an adapter run's trainable ones), into an unwrapped
    model (tests, inspection)."""
    stored = {key[len("model."):] for key in stored_keys(folder) if key.startswith("model.")}
    state = {"model": {k: v for k, v in model.state_dict().items() if k in stored}}
    if len(state["model"]) < len(stored):
        raise ValueError(f"{folder}: the model has no {', '.join(sorted(stored - set(state['model'])))}")
    _read(state, folder)
    model.load_state_dict(state["model"], strict=len(stored) == len(model.state_dict()))


def _numpy_state() -> dict:
    """numpy's global RNG state as a tensor and plain numbers (its own form holds an ndarray)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: dict) -> None:
    np.random.set_state((state["kind"], state["key"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                         state["gauss"]))
