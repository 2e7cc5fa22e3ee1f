"""generate holds about one copy of the recurrent state: the mLSTM C tensors alive at once, counted on
the CPU over every allocation generate makes (a dispatch mode sees each op's output; a storage counts
until it is freed).

A serving batch is bounded by the state: at 7B one sequence's C is 134 MB, so a second copy (a runner
cloning the prefill state, an eager step allocating a new C per block, concatenating padded groups)
halves the batch that fits. The bound here: the whole state plus one block's C in flight (before this bound: 2.5
to 3 copies on these paths).
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.schemas.models import XLSTMLargeLMConfig, XLSTMLMConfig

VOCAB, BLOCKS, B = 41, 4, 3
CONFIGS = {  # C per head 32 x 32 (the only (., NH, 32, 32) tensors), prompts of 9 tokens
    "large": XLSTMLargeLMConfig(vocab_size=VOCAB, embedding_dim=64, num_heads=2, num_blocks=BLOCKS,
                                qk_dim_factor=1.0, kernels={"chunk_size": 8, "mode": "inference"}),
    "neurips": XLSTMLMConfig(vocab_size=VOCAB, embedding_dim=32, num_blocks=BLOCKS,
                             mlstm_block={"mlstm": {"num_heads": 2}}, kernels={"chunk_size": 8, "mode": "inference"}),
}


class _LiveC(TorchDispatchMode):
    """Peak bytes of live storages holding mLSTM C tensors (B', NH, DHQK, DHV) made inside the mode."""

    def __init__(self, tail: tuple):
        super().__init__()
        self.tail, self.live, self.now, self.peak = tail, set(), 0, 0

    def _freed(self, key, size):
        self.live.discard(key)
        self.now -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.dim() == 4 and tuple(t.shape[1:]) == self.tail:
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in self.live:
                    self.live.add(key)
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._freed, key, storage.nbytes())
        return out


def _model(name):
    torch.manual_seed(0)
    return build_model(CONFIGS[name]).eval()


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("how", ["eager", "graph runner", "left padding"])
def test_generate_holds_one_copy_of_the_state(name, how):
    model = _model(name)
    ids = torch.randint(3, VOCAB, (B, 9))
    kwargs = {"cuda_graph": how == "graph runner"}
    if how == "left padding":  # three prompt lengths: three prefill groups
        kwargs["attention_mask"] = (torch.arange(9) >= torch.tensor([[0], [2], [5]])).long()
    with torch.no_grad():
        state = model(ids[:1]).state
    c = next(s for s in state.tensors() if s.dim() == 4)
    one_state = B * BLOCKS * c[0].nbytes  # a B-row state's C, all blocks
    counter = _LiveC(tuple(c.shape[1:]))
    with counter:
        model.generate(ids, 6, eos_token_id=None, **kwargs)
    assert counter.peak > 0.9 * one_state  # the counter sees the state
    # the state and one block's C in flight; with padding also the state of one prompt-length group
    # (here one row), written into the batch's state once made
    bound = (BLOCKS + 1) / BLOCKS + (1 / B if how == "left padding" else 0)
    assert counter.peak <= one_state * bound, (counter.peak / one_state)
