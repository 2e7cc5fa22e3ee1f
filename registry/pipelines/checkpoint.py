"""Resumable training state, written atomically: a run killed at any moment resumes from the last complete one.

A checkpoint is a folder `checkpoints/step-NNNNNNNN/` holding `trainer.pt` (model, optimizer, scheduler, RNG
states and the step, which is also the data position since batches are drawn from (seed, step)), made of
tensors and plain values only, so that resuming reads it with `torch.load(weights_only=True)` (no unpickling). The file
`checkpoints/latest` names the newest one; it is replaced with an atomic rename only after the folder is
complete, and older folders are removed after that.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

LATEST = "latest"


def save(root: Path, step: int, finished: bool, model: torch.nn.Module, optimizer, scheduler) -> Path:
    """`finished` marks the end of the run (last step or early stop), so resuming it trains no further."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(
        {
            "step": step,
            "finished": finished,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": random.getstate()},
        },
        tmp / "trainer.pt",
    )
    shutil.rmtree(root / name, ignore_errors=True)
    os.replace(tmp, root / name)
    pointer = root / f"{LATEST}.tmp"
    pointer.write_text(name)
    os.replace(pointer, root / LATEST)
    for old in root.iterdir():
        if old.is_dir() and old.name != name:
            shutil.rmtree(old)
    return root / name


def latest(root: Path) -> Path | None:
    pointer = root / LATEST
    return root / pointer.read_text().strip() if pointer.exists() else None


def load(folder: Path, model: torch.nn.Module, optimizer, scheduler) -> tuple[int, bool]:
    """Restore everything `save` wrote; returns the step to continue after and whether the run had finished."""
    state = torch.load(folder / "trainer.pt", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    _set_numpy_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state["step"], state["finished"]


def _numpy_state() -> dict:
    """numpy's global RNG state as a tensor and plain numbers (its own form holds an ndarray)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: dict) -> None:
    np.random.set_state((state["kind"], state["key"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                         state["gauss"]))
