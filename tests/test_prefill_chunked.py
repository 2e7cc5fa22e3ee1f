"""Chunked prefill: without autograd a long input runs in pieces of kernels.max_inference_chunksize
tokens, the state carried between them, and gives what one piece gives.

Both families in float32 on the CPU kernels (chunkwise for 16 tokens and more, the recurrent loop below,
the step kernel for single tokens: pieces of every size 1..S reach all three). The pieces compute the
same recurrence in a different grouping, so logits and states agree to float32 rounding (1e-5 relative).
"""

from __future__ import annotations

import pytest
import torch

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.schemas.models import XLSTMLargeLMConfig, XLSTMLMConfig

VOCAB = 41
S = 19  # odd, and longer than the recurrent loop's 16 tokens
KERNELS = {"chunk_size": 16, "mode": "inference"}
CONFIGS = {
    "neurips-mixed": lambda piece: XLSTMLMConfig(
        vocab_size=VOCAB, embedding_dim=32, num_blocks=3, slstm_at=[1], mlstm_block={"mlstm": {"num_heads": 2}},
        slstm_block={"slstm": {"num_heads": 2}}, kernels={**KERNELS, "max_inference_chunksize": piece}),
    "large": lambda piece: XLSTMLargeLMConfig(vocab_size=VOCAB, embedding_dim=64, num_heads=2, num_blocks=2,
                                              kernels={**KERNELS, "max_inference_chunksize": piece}),
}


def _build(family: str, piece: int):
    torch.manual_seed(0)
    model = build_model(CONFIGS[family](piece)).eval()
    with torch.no_grad():  # sharpen the logits so greedy choices are far from ties
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family", CONFIGS)
def test_pieces_of_every_size_equal_one_piece(family):
    whole = _build(family, 10**6)
    model = _build(family, 1)
    ids = torch.randint(0, VOCAB, (2, S), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, ref_state = whole(ids)
        ref_last = whole(ids, logits_to_keep=3).logits
        assert _rel(ref_last, ref[:, -3:]) < 1e-6  # the head on 3 rows or on all: the same up to GEMM order
        for piece in range(1, S + 1):
            model.config.kernels.max_inference_chunksize = piece * ids.shape[0]  # tokens over all rows
            logits, state = model(ids, logits_to_keep=0 if piece % 2 else 3)
            assert logits.shape == (ref if piece % 2 else ref_last).shape
            errors = [_rel(logits, ref if piece % 2 else ref_last),
                      *(_rel(a, b) for a, b in zip(state.tensors(), ref_state.tensors()))]
            assert max(errors) < 1e-5, (piece, errors)


@pytest.mark.parametrize("family", CONFIGS)
def test_greedy_tokens_identical_with_pieces(family):
    ids = torch.randint(0, VOCAB, (2, S), generator=torch.Generator().manual_seed(2))
    ref = _build(family, 10**6).generate(ids, 8)
    model = _build(family, 5)
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape[1]))
    assert torch.equal(model.generate(ids, 8), ref)
    handle.remove()
    assert calls[0] == S  # generate hands the whole prompt over: the forward cuts it


def test_pieces_only_without_autograd_and_head_only_where_asked():
    model = _build("large", 8)
    ids = torch.randint(0, VOCAB, (1, S))
    seen = []
    handle = model.lm_head.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        model(ids, logits_to_keep=1)
    assert seen == [1]  # the last piece's last position only
    seen.clear()
    with torch.no_grad():
        model(ids, logits_to_keep=10)
    assert seen == [7, 3]  # positions 9..15 (of the piece 8..15) and 16..18
    seen.clear()
    model(ids).logits.sum().backward()  # with autograd: one piece (the kernels' backward needs the whole)
    assert seen == [S]
    handle.remove()


def test_chunk_size_maps_to_and_from_transformers_config():
    from xlstm_zoo.registry.checkpoints.hf import from_hf_config, to_hf_config

    config = from_hf_config({"model_type": "xlstm", "num_hidden_layers": 2, "hidden_size": 64, "num_heads": 2,
                             "vocab_size": VOCAB, "max_inference_chunksize": 4096})
    assert config.kernels.max_inference_chunksize == 4096
    assert from_hf_config({"model_type": "xlstm"}).kernels.max_inference_chunksize == 16384  # transformers' default
    model = build_model(config)
    assert to_hf_config(model)["max_inference_chunksize"] == 4096
