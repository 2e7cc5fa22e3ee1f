"""MLSTM / SLSTM (torch.nn.LSTM's calling convention) and the xlstm-backbone model kind.

Shapes are compared with torch.nn.LSTM itself. Values: a split run equals the whole run, the bidirectional
output's backward half is the backward stack run on the flipped input, every parameter gets a gradient.
Tolerances: float32, 1e-5 (the chunkwise mLSTM kernel restarts its chunks at the split, so the sums are
associated differently; the sLSTM loop is the same arithmetic and matches to rounding).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from xlstm_zoo import MLSTM, SLSTM, build_model
from xlstm_zoo.schemas.sequence import XLSTMBackboneConfig

SMALL = {MLSTM: dict(num_heads=2), SLSTM: dict(num_heads=2)}


def make(cls, **kwargs):
    torch.manual_seed(0)
    return cls(5, 16, **{**SMALL[cls], **kwargs})


@pytest.mark.parametrize("cls", [MLSTM, SLSTM])
def test_output_shapes_match_nn_lstm(cls):
    for batch_first, bidirectional, layers in itertools.product([False, True], [False, True], [1, 2]):
        model = make(cls, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
        reference = torch.nn.LSTM(5, 16, layers, batch_first=batch_first, bidirectional=bidirectional)
        for x in (torch.randn(3, 7, 5), torch.randn(7, 5), torch.randn(1, 1, 5)):
            out, _ = model(x)
            assert out.shape == reference(x)[0].shape, (batch_first, bidirectional, layers, tuple(x.shape))


@pytest.mark.parametrize("cls", [MLSTM, SLSTM])
def test_split_run_equals_whole_run(cls):
    model = make(cls, num_layers=2, batch_first=True).eval()
    x = torch.randn(2, 11, 5)
    with torch.no_grad():
        whole, _ = model(x)
        state, pieces = None, []
        for a, b in ((0, 1), (1, 6), (6, 7), (7, 11)):  # lengths 1, 5, 1, 4
            out, state = model(x[:, a:b], state)
            pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, 1), whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [MLSTM, SLSTM])
def test_backward_half_is_the_backward_stack_on_the_flipped_sequence(cls):
    model = make(cls, bidirectional=True).eval()
    x = torch.randn(9, 2, 5)  # (L, N, H_in)
    with torch.no_grad():
        out, state = model(x)
        stack = model.backbone.stack
        projected = model.backbone.input_proj(x.transpose(0, 1))
        forward, _ = stack.forward_stack(projected)
        backward, backward_state = stack.backward_stack(projected.flip(1))
    torch.testing.assert_close(out[..., :16], forward.transpose(0, 1))
    torch.testing.assert_close(out[..., 16:], backward.flip(1).transpose(0, 1))
    torch.testing.assert_close(state.backward.tensors(), backward_state.tensors())
    assert not torch.allclose(out[..., 16:], out[..., :16], atol=1e-3)  # a second stack, not a copy


@pytest.mark.parametrize("cls", [MLSTM, SLSTM])
def test_summed_directions(cls):
    model = make(cls, bidirectional=True, merge="sum", batch_first=True).eval()
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        out, _ = model(x)
        stack = model.backbone.stack
        fwd, bwd, _ = stack.directions(model.backbone.input_proj(x))
    assert out.shape == (2, 6, 16)
    torch.testing.assert_close(out, fwd + bwd)


@pytest.mark.parametrize("cls", [MLSTM, SLSTM])
def test_gradients_reach_every_parameter(cls):
    model = make(cls, num_layers=2, bidirectional=True)
    out, _ = model(torch.randn(4, 2, 5))
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_length_one_and_stateful_steps():
    model = make(MLSTM, batch_first=True).eval()
    x = torch.randn(3, 4, 5)
    with torch.no_grad():
        whole, _ = model(x)
        state, steps = None, []
        for t in range(4):
            out, state = model(x[:, t:t + 1], state)
            steps.append(out)
    assert steps[0].shape == (3, 1, 16)
    torch.testing.assert_close(torch.cat(steps, 1), whole, atol=1e-5, rtol=1e-5)


def test_modules_are_configured_by_a_backbone_schema():
    model = MLSTM(5, 32, num_layers=3, num_heads=4, bidirectional=True)
    config = model.config
    assert isinstance(config, XLSTMBackboneConfig) and config.head is None
    assert (config.stack.kind, config.stack.num_blocks, config.bidirectional.merge) == ("xlstm-stack", 3, "concat")
    again = MLSTM.from_config(config.model_dump())
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in model.named_parameters()]
    slstm = SLSTM(5, 32, num_layers=2)
    assert [b.kind for b in slstm.config.stack.block_configs()] == ["slstm-block", "slstm-block"]
    # the sLSTM forget-gate bias follows the block-dependent power law, as in the LMs
    bias = slstm.backbone.stack.forward_stack.blocks[0].xlstm.slstm_cell.bias
    assert bias[:, 1].abs().sum() > 0 and bias[:, 0].abs().sum() == 0
    with pytest.raises(ValueError, match="num_heads"):
        MLSTM(5, 30, num_heads=7)


BACKBONE = {"kind": "xlstm-backbone", "input_size": 3,
            "stack": {"kind": "xlstm-stack", "embedding_dim": 16, "num_blocks": 2, "slstm_at": [1],
                      "mlstm_block": {"mlstm": {"num_heads": 2}}, "slstm_block": {"slstm": {"num_heads": 2}}}}


@pytest.mark.parametrize("head, shape", [
    ({"kind": "classification", "num_classes": 5}, (2, 5)),
    ({"kind": "classification", "num_classes": 5, "pooling": "mean"}, (2, 5)),
    ({"kind": "regression", "output_size": 2, "pooling": "max"}, (2, 2)),
    ({"kind": "regression", "pooling": "none"}, (2, 7, 1)),
    ({"kind": "quantile-forecast", "horizon": 4, "quantiles": [0.1, 0.5, 0.9]}, (2, 3, 4)),
])
def test_backbone_heads(head, shape):
    model = build_model({**BACKBONE, "head": head, "bidirectional": {"merge": "concat"}}).eval()
    x = torch.randn(2, 7, 3)
    with torch.no_grad():
        out = model(x)
    assert out.output.shape == shape and out.features.shape == (2, 7, 32)
    if head.get("pooling", "last") == "last":  # forward's final step next to the backward stack's (position 0)
        fwd, bwd, _ = model.stack.directions(model.input_proj(x))
        pooled = torch.cat([fwd[:, -1], bwd[:, 0]], -1)
        torch.testing.assert_close(out.output.flatten(1), model.head.proj(pooled))


def test_large_stack_backbone_carries_state():
    config = {"kind": "xlstm-backbone", "input_size": 3, "head": {"kind": "regression", "pooling": "none"},
              "stack": {"kind": "xlstm-large-stack", "embedding_dim": 32, "num_heads": 2, "num_blocks": 2}}
    model = build_model(config).eval()
    x = torch.randn(2, 9, 3)
    with torch.no_grad():
        whole = model(x).output
        first = model(x[:, :4])
        second = model(x[:, 4:], first.state)
    torch.testing.assert_close(torch.cat([first.output, second.output], 1), whole, atol=1e-5, rtol=1e-5)
    assert model.stack.forward_stack.blocks[0].mlstm_layer.fgate_preact.bias.std() > 0  # the 7B init's linspace


def test_backbone_rejects_wrong_input_width():
    model = build_model({**BACKBONE, "head": {"kind": "regression"}})
    with pytest.raises(ValueError, match=r"expected input \(batch, length, 3\)"):
        model(torch.randn(2, 7, 4))


def test_bad_backbone_config_names_the_keys(tmp_path):
    from xlstm_zoo.schemas import ConfigError
    from xlstm_zoo.schemas.entry import ModelDocument
    from xlstm_zoo.schemas.yaml_io import load_yaml, validate_document

    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  kind: xlstm-backbone\n  input_size: 3\n  stack:\n    kind: xlstm-stack\n"
                    "    embedding_dim: 30\n    num_blocks: 1\n    mlstm_block: {mlstm: {num_heads: 7}}\n"
                    "  bidirectional: {merge: mean}\n  head: {kind: quantile-forecast, horizon: 4, quantiles: [0.5, 0.1]}\n")
    with pytest.raises(ConfigError) as e:
        validate_document(ModelDocument, load_yaml(path))
    text = str(e.value)
    assert f"{path}:8:38: model.stack.mlstm_block.mlstm.num_heads: expected a divisor of the inner dim 64" in text
    assert f"{path}:9:26: model.bidirectional.merge: expected 'concat' or 'sum', got 'mean'" in text
    assert f"{path}:10:47: model.head.quantiles: expected distinct increasing levels" in text
