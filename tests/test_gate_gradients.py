"""The chunkwise kernel's gate gradients in 16-bit, in Triton's interpreter, against float64 on the same
rounded inputs.

d(cumsum log f) is a reverse cumulative sum of q.dq - k.dk, two large terms that nearly cancel: formed
from the 16-bit intra-chunk gradient matrix that the dq / dk products take, their error was 2.5-5x that
of dq (float16 here: df 1.2e-3 against dq 4.6e-4; bf16 on an H200: 3.8%, 53% with strong gates at L=256).
The kernels now sum ds * (q.k) in float32 for them, and df is as accurate as the other gradients (here
4.6e-4; bf16 on an H200: 0.52%, benchmarks/results/kernels-20261201-1732-*-gates.md).
float16, not bf16: the interpreter truncates to bf16 where GPUs round, which would dominate the errors.

Strong gates (i ~ 10 N(0,1), f ~ 10 N(0,1) + 5) in float32: the decay from the chunk start reaches hundreds,
and a weight's exponent is the small difference of two such numbers; with one float32 word each it was off
by ulp(|b|) (here h 8e-5 .. df 6e-4, at S=4096 2% of h and 3% of df, in float32 and bf16 alike). With the
low word the kernel is at the float32 floor of the case: the float64 reference itself moves by 1e-6 (h) to
5e-6 (df) when the inputs get relative perturbations of 2^-24 (issue 12's cases with that floor beside them:
benchmarks/results/kernels-20261201-1929-*-gates.md).
"""

from __future__ import annotations

import json

import pytest
import torch

from interpreted import run_interpreted


def _errors(S, DQ, DV, L, dtype, i_scale, f_shift, f_scale) -> dict:
    """Relative errors of h and the gradients of sum(h w), one head, against float64 on the same inputs."""
    from xlstm_zoo.kernels import mlstm_native
    from xlstm_zoo.kernels.triton import mlstm_chunkwise

    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 1, S, DQ, generator=g).to(dtype) for _ in range(2))
    v = torch.randn(1, 1, S, DV, generator=g).to(dtype)
    i = (i_scale * torch.randn(1, 1, S, generator=g)).to(dtype)
    f = (f_shift + f_scale * torch.randn(1, 1, S, generator=g)).to(dtype)
    w = torch.randn(1, 1, S, DV, generator=g, dtype=torch.float64)
    outs = {}
    for name, fn, cast, chunk in (("float64", mlstm_native.mlstm_parallel, torch.Tensor.double, S),
                                  ("triton", mlstm_chunkwise.mlstm_chunkwise, lambda x: x, L)):
        xs = [cast(x).detach().requires_grad_() for x in (q, k, v, i, f)]
        h = fn(*xs, chunk_size=chunk)
        (h.double() * w).sum().backward()
        outs[name] = [h.detach().double()] + [x.grad.double() for x in xs]
    return {n: float((a - b).norm() / b.norm()) for n, a, b in zip(("h", "dq", "dk", "dv", "di", "df"), *outs.values())}


@pytest.fixture(scope="module")
def errors():
    return run_interpreted(__file__)


def test_forget_gate_gradient_as_accurate_as_the_others(errors):
    err = errors["fp16"]
    assert max(err.values()) < 1e-3, err  # float16: 2**-11 per rounding
    assert err["df"] < 1.5 * max(err["dq"], err["dk"]), err


def test_strong_gates_at_the_float32_floor(errors):
    err = errors["strong_fp32"]
    assert max(err.values()) < 2e-5, err  # the floor: 1e-6 .. 5e-6; one-word exponents: 8e-5 .. 6e-4


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps({"fp16": _errors(512, 96, 192, 64, torch.float16, 1.0, 3.0, 1.0),
                      "strong_fp32": _errors(512, 16, 16, 256, torch.float32, 10.0, 5.0, 10.0)}))
