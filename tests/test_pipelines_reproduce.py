"""The acceptance run: `xlstm-zoo reproduce formal-lang-small` re-establishes the entry's parity numbers on CPU
(xLSTM[0:1] solves parity at lengths 40-256, xLSTM[1:0] stays at chance; on MQAR xLSTM[1:0] recalls and
xLSTM[0:1] does not) and exits 0. About 3 minutes on 2 cores."""

from __future__ import annotations

from reproducing import reproduce


def test_reproduce_formal_lang_small(tmp_path):
    rows = [line for line in reproduce("formal-lang-small", tmp_path) if line.startswith(("| parity", "| multi-query"))]
    assert len(rows) == 4 and all(row.endswith("| PASS |") for row in rows), rows
    assert (tmp_path / "parity-slstm" / "model" / "model.safetensors").exists()


def test_reproduce_shakespeare_byte_with_lm_eval(tmp_path):
    """The CI-trained LM entry: a minute of training on 2 cores, then its lm-eval numbers (held-out bits per
    byte by rolling log-likelihood, next-line accuracy) re-measured on the zoo's local tasks."""
    rows = [line for line in reproduce("xlstm-shakespeare-byte", tmp_path) if line.startswith("| lm-eval:")]
    assert len(rows) == 2 and all(row.endswith("| PASS |") for row in rows), rows
