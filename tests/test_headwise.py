"""The NeurIPS block-diagonal q/k/v projection: its dense form (taken on CUDA) is the same map as the block
products (taken elsewhere), with the same gradients. float64, so the only difference is summation order (1e-12)."""

import torch

from xlstm_zoo.xlstm.layers import LinearHeadwiseExpand


def test_dense_block_diagonal_weight_equals_the_block_products():
    torch.manual_seed(0)
    layer = LinearHeadwiseExpand(24, 6, bias=True).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 5, 24, dtype=torch.float64)
    dense = layer.dense_weight()
    blocks = torch.block_diag(*layer.weight.unbind(0))  # torch's own construction of the same matrix
    assert torch.equal(dense, blocks)
    y_blocks = layer(x)
    y_dense = torch.nn.functional.linear(x, dense, layer.bias)
    torch.testing.assert_close(y_dense, y_blocks, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y_blocks)
    (grad_blocks,) = torch.autograd.grad(y_blocks, layer.weight, g)
    (grad_dense,) = torch.autograd.grad(torch.nn.functional.linear(x, layer.dense_weight(), layer.bias), layer.weight, g)
    torch.testing.assert_close(grad_dense, grad_blocks, rtol=1e-12, atol=1e-12)
