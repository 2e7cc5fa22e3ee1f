"""Checkpoint directories by source: `local-dir:PATH`, or `hf-hub:ORG/NAME[@REVISION]` read offline from the local
Hugging Face cache (found by the environment variables huggingface_hub reads). The hub is never contacted. Both
the weights (checkpoints.store) and a checkpoint's tokenizer (data.tokenizers) are found here."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

HUB_SOURCE = re.compile(r"[\w.-]+/[\w.-]+(@[\w./-]+)?")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, by the same environment variables huggingface_hub reads."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _snapshot(repo: str, revision: str) -> tuple[Path, Optional[Path]]:
    """The repo's folder in the cache and its snapshot for `revision` (None if not cached)."""
    repo_dir = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        commit = revision
    else:
        ref = repo_dir / "refs" / revision
        if not ref.is_file():
            return repo_dir, None
        commit = ref.read_text().strip()
    snapshot = repo_dir / "snapshots" / commit
    return repo_dir, snapshot if snapshot.is_dir() else None


def not_cached(repo: str, missing: Iterable[str], where) -> FileNotFoundError:
    return FileNotFoundError(
        f"hf-hub:{repo}: not in the local Hugging Face cache (read offline). Looked for {', '.join(missing)} in "
        f"{where}. Download it first, e.g. `huggingface-cli download {repo}` (or set HF_HUB_CACHE / HF_HOME to the "
        "cache that has it)")


def source_directory(source: str, wanted: Iterable[str] = (), revision: Optional[str] = None) -> Path:
    """The directory of `local-dir:PATH` or `hf-hub:ORG/NAME[@REVISION]` (`revision` overrides the source's; the
    default is main), holding every file in `wanted`. FileNotFoundError names what was looked for and where (for the
    hub: the cache folder searched); a malformed source is a ValueError."""
    kind, _, rest = source.partition(":")
    wanted = list(wanted)
    if kind == "local-dir":
        path = Path(rest).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{source}: {path} is not a directory")
        missing = [name for name in wanted if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{source}: no {', '.join(missing)} in {path}")
        return path
    if kind != "hf-hub" or not HUB_SOURCE.fullmatch(rest):
        raise ValueError(f"{source!r}: expected 'local-dir:PATH' or 'hf-hub:ORG/NAME[@REVISION]'")
    repo, _, at = rest.partition("@")
    revision = revision or at or "main"
    repo_dir, snapshot = _snapshot(repo, revision)
    if snapshot is None:
        raise not_cached(repo, wanted, f"{repo_dir} (no snapshot for revision {revision!r})")
    missing = [name for name in wanted if not (snapshot / name).is_file()]
    if missing:
        raise not_cached(repo, missing, snapshot)
    return snapshot
