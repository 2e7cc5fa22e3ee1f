"""The causal depthwise convolution: its shifted-sum form (taken under torch.compile, where Inductor fuses it
with the pointwise work around it) is the same map as the conv kernel (taken in eager), with the same
gradients and the same carried history. float64, so the only difference is summation order (1e-12)."""

import pytest
import torch

from xlstm_zoo.xlstm.layers import CausalConv1d


def _run(conv, x, history):
    y, kept = conv(x, history)
    grads = torch.autograd.grad(y, [x, conv.conv.weight, conv.conv.bias], torch.ones_like(y) + y.detach())
    return y, kept, grads


@pytest.mark.parametrize("with_history", [False, True])
def test_shifted_sums_equal_the_conv_kernel(monkeypatch, with_history):
    torch.manual_seed(0)
    conv = CausalConv1d(6, 4).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64, requires_grad=True)
    history = torch.randn(2, 3, 6, dtype=torch.float64) if with_history else None
    want = _run(conv, x, history)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    got = _run(conv, x, history)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    assert torch.equal(got[1], want[1])
    for g, w in zip(got[2], want[2]):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_compiled_convolution_equals_eager():
    torch.manual_seed(1)
    conv = CausalConv1d(5, 3).double()
    x = torch.randn(1, 7, 5, dtype=torch.float64)
    compiled = torch.compile(conv, fullgraph=True)
    for history in (None, torch.randn(1, 2, 5, dtype=torch.float64)):  # a piece after the first carries history
        (y, kept), (yc, kept_c) = conv(x, history), compiled(x, history)
        torch.testing.assert_close(yc, y, rtol=1e-12, atol=1e-12)
        assert torch.equal(kept_c, kept)
