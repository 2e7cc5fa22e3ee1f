"""Run `xlstm-zoo reproduce NAME` in a fresh process (2 threads, as CI's machine has) and return its table rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def reproduce(name: str, out: Path, threads: int = 2) -> list[str]:
    """The Markdown rows of the result table (asserting the command exited 0)."""
    code = (f"import sys, torch; torch.set_num_threads({threads}); from xlstm_zoo.registry.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "reproduce", name, "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| task")]
