"""generate(): state carried between steps, left padding honoured exactly, sampling controls."""

from __future__ import annotations

import pytest
import torch

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.schemas.models import XLSTMLargeLMConfig, XLSTMLMConfig
from xlstm_zoo.xlstm.generation import generate

VOCAB = 41
CONFIGS = {
    "neurips-mixed": XLSTMLMConfig(vocab_size=VOCAB, embedding_dim=32, num_blocks=3, slstm_at=[1],
                                   mlstm_block={"mlstm": {"num_heads": 2}}, slstm_block={"slstm": {"num_heads": 2}}),
    "large": XLSTMLargeLMConfig(vocab_size=VOCAB, embedding_dim=64, num_heads=2, num_blocks=2,
                                kernels={"chunk_size": 8, "mode": "inference"}),
}


@pytest.fixture(params=CONFIGS.values(), ids=CONFIGS.keys())
def model(request):
    torch.manual_seed(0)
    model = build_model(request.param).eval()
    with torch.no_grad():  # sharpen the logits so greedy choices are far from ties
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_greedy_equals_teacher_forced_argmax_and_steps_one_token(model):
    prompt = torch.randint(0, VOCAB, (2, 11))
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(tuple(args[0].shape)))
    out = model.generate(prompt, 9)
    handle.remove()
    assert out.shape == (2, 20) and torch.equal(out[:, :11], prompt)
    assert calls == [(2, 11)] + [(2, 1)] * 8  # one prefill, then one token per step (state carried)
    with torch.no_grad():
        logits = model(out[:, :-1]).logits
    assert torch.equal(logits[:, 10:].argmax(-1), out[:, 11:])


def test_left_padding_equals_generating_each_row_alone(model):
    lengths = [7, 3, 7, 1]
    width = max(lengths)
    rows = [torch.randint(3, VOCAB, (n,)) for n in lengths]
    ids = torch.stack([torch.cat([torch.zeros(width - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.arange(width) >= width - len(r) for r in rows]).long()
    batched = model.generate(ids, 6, attention_mask=mask)
    for j, row in enumerate(rows):
        alone = model.generate(row[None], 6)
        assert torch.equal(batched[j, width:], alone[0, len(row):])
    with pytest.raises(ValueError, match="left padding"):
        model.generate(ids, 2, attention_mask=mask.flip(1))


def test_eos_stops_rows_and_generation(model):
    prompt = torch.randint(0, VOCAB, (3, 5))
    free = model.generate(prompt, 8)
    eos = int(free[0, 6])  # the second token row 0 produces
    out = model.generate(prompt, 8, eos_token_id=eos)
    for row_free, row in zip(free[:, 5:], out[:, 5:]):
        hits = (row_free == eos).nonzero()
        if len(hits):
            stop = int(hits[0])
            assert torch.equal(row[: stop + 1], row_free[: stop + 1]) and (row[stop:] == eos).all()
    first_hits = [(row == eos).nonzero() for row in free[:, 5:]]
    if all(len(h) for h in first_hits):  # everyone finishes: generation stops at the last row's eos
        assert out.shape[1] == 5 + max(int(h[0]) for h in first_hits) + 1
    else:
        assert out.shape[1] == 13


def test_generation_stops_at_the_step_every_row_has_finished(model):
    """Whatever eos is, the output ends at the step of the last row's first eos (or runs to the limit).
    Rows 0 and 1 share a prompt, so every token row 0 produces ends both; row 2 may not."""
    prompt = torch.randint(0, VOCAB, (2, 4)).repeat_interleave(torch.tensor([2, 1]), 0)
    free = model.generate(prompt, 10, eos_token_id=None)[:, 4:]  # the configs have no eos
    for eos in free[0].unique().tolist():
        hits = [(row == eos).nonzero() for row in free]
        expected = 4 + (max(int(h[0]) for h in hits) + 1 if all(len(h) for h in hits) else 10)
        assert model.generate(prompt, 10, eos_token_id=eos).shape[1] == expected
    two_rows = model.generate(prompt[:2], 10, eos_token_id=int(free[0, 3]))
    assert two_rows.shape[1] == 4 + int((free[0] == free[0, 3]).nonzero()[0]) + 1 < 14  # stops early


def test_sampling_controls(model):
    prompt = torch.randint(0, VOCAB, (2, 4))
    greedy = model.generate(prompt, 5)
    assert torch.equal(model.generate(prompt, 5, do_sample=True, top_k=1), greedy)
    assert torch.equal(model.generate(prompt, 5, do_sample=True, top_p=1e-6), greedy)
    draw = lambda: model.generate(prompt, 5, do_sample=True, temperature=2.0,  # noqa: E731
                                  generator=torch.Generator().manual_seed(3))
    assert torch.equal(draw(), draw())
    spread = generate(model, prompt.repeat(16, 1), 1, do_sample=True, temperature=5.0,
                      generator=torch.Generator().manual_seed(0))[:, -1]
    assert len(spread.unique()) > 1  # sampling does sample
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 1, do_sample=True, temperature=0.0)
