"""Packaging: one import root, no top-level `xlstm`/`kernels`/`schemas`/`registry` module, so transformers'
own xLSTM keeps working next to xlstm-zoo (transformers imports NX-AI's `xlstm` whenever one is importable)."""

import subprocess
import sys


def run_outside_checkout(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_only_the_xlstm_zoo_root_is_importable():
    code = ("import importlib.util as u; import xlstm_zoo.xlstm, xlstm_zoo.kernels, xlstm_zoo.schemas, "
            "xlstm_zoo.registry; print([n for n in ('xlstm', 'kernels', 'schemas', 'registry') if u.find_spec(n)])")
    assert run_outside_checkout(code) == "[]"


def test_transformers_xlstm_builds_and_runs_beside_xlstm_zoo():
    code = (
        "import torch, xlstm_zoo.xlstm\n"
        "from transformers import xLSTMConfig, xLSTMForCausalLM\n"
        "torch.manual_seed(0)\n"
        "cfg = xLSTMConfig(vocab_size=64, hidden_size=128, num_hidden_layers=2, num_heads=2, qk_dim_factor=0.5,"
        " v_dim_factor=1.0, mode='inference', chunk_size=8)\n"
        "m = xLSTMForCausalLM(cfg).eval()\n"
        "out = m(torch.arange(10).unsqueeze(0)).logits\n"
        "print(tuple(out.shape), bool(torch.isfinite(out).all()), type(m.backbone.blocks[0]).__module__)\n"
    )
    shape, finite, module = run_outside_checkout(code).splitlines()[-1].rsplit(" ", 2)
    assert shape.startswith("(1, 10, 64)")
    assert finite == "True"
    assert module.startswith("transformers.")  # its own implementation, not NX-AI's package
