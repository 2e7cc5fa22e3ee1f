"""Prefill fast path: last-position logits only (`logits_to_keep`)."""

from __future__ import annotations

import pytest
import torch

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.schemas.models import XLSTMLargeLMConfig, XLSTMLMConfig
from xlstm_zoo.xlstm import generation

VOCAB = 41
LARGE = XLSTMLargeLMConfig(vocab_size=VOCAB, embedding_dim=64, num_heads=2, num_blocks=2,
                           kernels={"chunk_size": 8, "mode": "inference"})
NEURIPS = XLSTMLMConfig(vocab_size=VOCAB, embedding_dim=32, num_blocks=3, slstm_at=[1],
                        mlstm_block={"mlstm": {"num_heads": 2}}, slstm_block={"slstm": {"num_heads": 2}})


def _model(config):
    torch.manual_seed(0)
    return build_model(config).eval()


@pytest.mark.parametrize("config", [LARGE, NEURIPS], ids=["large", "neurips"])
@torch.no_grad()
def test_logits_to_keep_is_the_tail_of_all_logits(config):
    model = _model(config)
    ids = torch.randint(0, VOCAB, (2, 20))
    full, state = model(ids)
    for keep in (1, 3):
        tail, tail_state = model(ids, logits_to_keep=keep)
        assert tail.shape == (2, keep, VOCAB) and tail.dtype == torch.float32
        torch.testing.assert_close(tail, full[:, -keep:], rtol=1e-5, atol=1e-5)
        for a, b in zip(state.tensors(), tail_state.tensors()):
            assert torch.equal(a, b)
    assert torch.equal(model(ids, logits_to_keep=0).logits, full)  # 0 (the default): every position


def test_generation_prefill_asks_for_the_last_logits_only(monkeypatch):
    model, seen = _model(LARGE), []
    forward = model.forward

    def spy(input_ids, state=None, **kw):
        seen.append(kw)
        return forward(input_ids, state, **kw)
    spy.__signature__ = __import__("inspect").signature(forward)
    monkeypatch.setattr(model, "forward", spy)
    model.generate(torch.randint(0, VOCAB, (1, 20)), 3, cuda_graph=False)
    assert seen[0] == {"logits_to_keep": 1} and all(kw == {} for kw in seen[1:])

    class Plain(torch.nn.Module):  # the generic forward(input_ids, state=None) contract still serves
        def __init__(self):
            super().__init__()
            self.inner, self.config = _model(LARGE), LARGE

        def forward(self, input_ids, state=None):
            return self.inner(input_ids, state)
    plain = Plain()
    assert torch.equal(generation.generate(plain, torch.ones(1, 5, dtype=torch.long), 3, cuda_graph=False),
                       plain.inner.generate(torch.ones(1, 5, dtype=torch.long), 3, cuda_graph=False))
