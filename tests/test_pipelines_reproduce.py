"""The acceptance run: `xlstm-zoo reproduce formal-lang-small` re-establishes the entry's parity numbers on CPU
(xLSTM[0:1] solves parity at lengths 40-256, xLSTM[1:0] stays at chance; on MQAR xLSTM[1:0] recalls and
xLSTM[0:1] does not) and exits 0. About 3 minutes on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys


def reproduce(name: str, out) -> list[str]:
    """`xlstm-zoo reproduce NAME` on 2 threads, as CI runs it; the lines of its table. It must exit 0."""
    code = ("import sys, torch; torch.set_num_threads(2); from xlstm_zoo.registry.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "reproduce", name, "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_reproduce_formal_lang_small(tmp_path):
    rows = [line for line in reproduce("formal-lang-small", tmp_path) if line.startswith(("| parity", "| multi-query"))]
    assert len(rows) == 4 and all(row.endswith("| PASS |") for row in rows), rows
    assert (tmp_path / "parity-slstm" / "model" / "model.safetensors").exists()


def test_reproduce_shakespeare_byte_with_lm_eval(tmp_path):
    """The CI-trained LM entry: a minute of training on 2 cores, then its lm-eval numbers (held-out bits per
    byte by rolling log-likelihood, next-line accuracy) re-measured on the zoo's local tasks."""
    rows = [line for line in reproduce("xlstm-shakespeare-byte", tmp_path) if line.startswith("| lm-eval:")]
    assert len(rows) == 2 and all(row.endswith("| PASS |") for row in rows), rows
