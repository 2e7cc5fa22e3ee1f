"""The chunkwise kernel's gate gradients in 16-bit, in Triton's interpreter, against float64 on the same
rounded inputs.

d(cumsum log f) is a reverse cumulative sum of q.dq - k.dk, two large terms that nearly cancel: formed
from the 16-bit intra-chunk gradient matrix that the dq / dk products take, their error was 2.5-5x that
of dq (float16 here: df 1.2e-3 against dq 4.6e-4; bf16 on an H200: 3.8%, 53% with strong gates at L=256).
The kernels now sum ds * (q.k) in float32 for them, and df is as accurate as the other gradients (here
4.6e-4; bf16 on an H200: 0.52%, benchmarks/results/kernels-20261201-1732-*-gates.md).
float16, not bf16: the interpreter truncates to bf16 where GPUs round, which would dominate the errors.
"""

from __future__ import annotations

import json

import pytest
import torch

from interpreted import run_interpreted


def _errors() -> dict:
    from xlstm_zoo.kernels import mlstm_native
    from xlstm_zoo.kernels.triton import mlstm_chunkwise

    g = torch.Generator().manual_seed(0)
    B, NH, S, DQ, DV = 1, 1, 512, 96, 192
    q, k = (torch.randn(B, NH, S, DQ, generator=g).half() for _ in range(2))
    v = torch.randn(B, NH, S, DV, generator=g).half()
    i, f = torch.randn(B, NH, S, generator=g).half(), (3 + torch.randn(B, NH, S, generator=g)).half()
    w = torch.randn(B, NH, S, DV, generator=g, dtype=torch.float64)
    grads = {}
    for name, fn, cast, L in (("float64", mlstm_native.mlstm_parallel, torch.Tensor.double, S),
                              ("triton", mlstm_chunkwise.mlstm_chunkwise, lambda x: x, 64)):
        xs = [cast(x).detach().requires_grad_() for x in (q, k, v, i, f)]
        (fn(*xs, chunk_size=L).double() * w).sum().backward()
        grads[name] = [x.grad.double() for x in xs]
    return {n: float((a - b).norm() / b.norm()) for n, a, b in zip(("dq", "dk", "dv", "di", "df"), *grads.values())}


@pytest.fixture(scope="module")
def errors():
    return run_interpreted(__file__)


def test_forget_gate_gradient_as_accurate_as_the_others(errors):
    assert max(errors.values()) < 1e-3, errors  # float16: 2**-11 per rounding
    assert errors["df"] < 1.5 * max(errors["dq"], errors["dk"]), errors


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(_errors()))
