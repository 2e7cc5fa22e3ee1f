"""The graph decode runner (xlstm/cuda_graph.py) without a GPU: its static-buffer step run eagerly must
generate exactly what the plain eager loop generates; runners are cached per model and batch size."""

from __future__ import annotations

import torch

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.schemas.models import XLSTMLargeLMConfig
from xlstm_zoo.xlstm import cuda_graph

VOCAB = 41


def _model():
    torch.manual_seed(0)
    config = XLSTMLargeLMConfig(vocab_size=VOCAB, embedding_dim=64, num_heads=2, num_blocks=2,
                                kernels={"chunk_size": 8, "mode": "inference"})
    model = build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_runner_generates_what_the_eager_loop_generates():
    model = _model()
    prompt = torch.randint(3, VOCAB, (3, 9))
    mask = torch.ones_like(prompt)
    mask[1, :4] = 0
    for kwargs in ({}, {"attention_mask": mask}, {"do_sample": True, "top_k": 5, "top_p": 0.9}):
        outs = [model.generate(prompt, 12, eos_token_id=None, cuda_graph=graph,
                               generator=torch.Generator().manual_seed(1), **kwargs) for graph in (False, True)]
        assert torch.equal(*outs)
    eos = int(model.generate(prompt, 3, eos_token_id=None)[0, -1])  # row 0's third token
    assert torch.equal(model.generate(prompt, 12, eos_token_id=eos, cuda_graph=True),
                       model.generate(prompt, 12, eos_token_id=eos, cuda_graph=False))


def test_runner_is_cached_per_batch_and_takes_the_state_over():
    model = _model()
    with torch.no_grad():
        _, state = model(torch.randint(0, VOCAB, (2, 5)))
    before = state.map(torch.clone)
    first = cuda_graph.graph_decoder(model, state)
    # the first runner adopts the state's tensors as its buffers: no second copy
    assert [t.data_ptr() for t in first.state.tensors()] == [t.data_ptr() for t in state.tensors()]
    first(torch.tensor([1, 2]))
    again = before.map(torch.clone)
    assert cuda_graph.graph_decoder(model, again) is first
    # a cached runner copies a state in and drops each block of it (two whole copies never coexist)
    assert again.blocks == [None] * len(before.blocks)
    assert all(torch.equal(a, b) for a, b in zip(first.state.tensors(), before.tensors()))
    with torch.no_grad():
        _, wider = model(torch.randint(0, VOCAB, (3, 5)))
    assert cuda_graph.graph_decoder(model, wider) is not first
    assert cuda_graph.graph_decoder(model, before).key[0] == 2


def test_warm_up_steps_leave_the_adopted_state_as_it_was():
    """The capture's warm-up runs decode steps on the prefill state itself (no copy of it): inside
    _state_kept they must leave every tensor bit for bit as it was, C included (never saved)."""
    from xlstm_zoo.schemas.models import XLSTMLMConfig

    neurips = XLSTMLMConfig(vocab_size=VOCAB, embedding_dim=32, num_blocks=2, slstm_at=[1],
                            mlstm_block={"mlstm": {"num_heads": 2}}, slstm_block={"slstm": {"num_heads": 2}},
                            kernels={"mode": "inference"})
    torch.manual_seed(0)
    for model in (_model(), build_model(neurips).eval()):
        with torch.no_grad():
            _, state = model(torch.randint(0, VOCAB, (2, 7)))
        before = state.map(torch.clone)
        runner = cuda_graph.GraphDecoder(model, state)  # on the CPU: no capture, the same static-buffer step
        runner.token.fill_(3)
        with runner._state_kept():
            for _ in range(2):
                runner._step()
        assert all(torch.equal(a, b) for a, b in zip(runner.state.tensors(), before.tensors()))
        runner._step()  # outside, a step does change the state
        assert not torch.equal(runner.state.tensors()[0], before.tensors()[0])
