"""Decode steps replayed from one captured CUDA graph.

An eager 7B decode step launches ~1,600 small kernels from Python: ~57 ms of host time per token for
~9 ms of GPU work. Captured once, a step is one graph launch: the forward reads a static token buffer and
static state buffers owned by the runner, and the new state is copied back into those buffers inside the
graph, except the mLSTM C, which the step kernel updates in place (`states_updated_in_place`). Runners
are cached per model and batch size, so the capture is paid once, not per `generate` call.
"""

from __future__ import annotations

import contextlib
import weakref

import torch

from .backend import states_updated_in_place
from .state import LMState, MLSTMState

_RUNNERS: "weakref.WeakKeyDictionary[torch.nn.Module, GraphDecoder]" = weakref.WeakKeyDictionary()


def _key(model: torch.nn.Module, state: LMState) -> tuple:
    """Batch size and where the weights live: a graph reads them by address, so moving the model (or
    converting its weight mode) invalidates it."""
    return (state.tensors()[0].shape[0], *(a for t in (*model.parameters(), *model.buffers()) for a in _addresses(t)))


def _addresses(t: torch.Tensor) -> tuple:
    """Where a tensor's data lies; for tensor subclasses (quantized weights), where each inner tensor does."""
    if hasattr(t, "__tensor_flatten__"):
        return tuple(a for name in t.__tensor_flatten__()[0] if (inner := getattr(t, name)) is not None
                     for a in _addresses(inner))
    return (t.data_ptr(),)


class GraphDecoder:
    """`runner(token (B,)) -> logits (B, vocab)`, one decode step; `start(state)` loads a prefill state.

    On CUDA the step is captured; on other devices the same static-buffer step runs eagerly, which keeps
    the runner's logic testable. The returned logits are a static buffer, overwritten by the next step.
    """

    def __init__(self, model: torch.nn.Module, state: LMState):
        self.key = _key(model, state)
        self.state = state  # adopted: its tensors are the static buffers (no second copy of the state)
        first = state.tensors()[0]
        self.token = torch.zeros(first.shape[0], 1, dtype=torch.long, device=first.device)
        self.model = weakref.ref(model)  # the cache is keyed weakly by the model: never hold it
        self.graph = None
        if self.token.is_cuda:
            self._capture()

    @torch.no_grad()
    def _step(self) -> torch.Tensor:
        with states_updated_in_place():  # the mLSTM C buffers are updated by the step kernel itself
            logits, new = self.model()(self.token, self.state)
        pairs = zip(self.state.tensors(), new.tensors())
        moved = [(dst, src) for dst, src in pairs if dst.data_ptr() != src.data_ptr()]
        if moved:  # one multi-tensor launch instead of one copy per tensor
            torch._foreach_copy_(*map(list, zip(*moved)))
        return logits[:, -1]

    @contextlib.contextmanager
    def _state_kept(self):
        """Steps run inside leave the buffers as they were, without a copy of the largest state: with every
        mLSTM stabiliser at +1e30 a step leaves C exactly as it is (forget weight exp(0) = 1, input weight
        exp(-1e30) = 0); the other, small tensors are saved and put back."""
        cells = [s for s in _cells(self.state) if isinstance(s, MLSTMState)]
        kept = {id(s.c) for s in cells}
        saved = [(t, t.clone()) for t in self.state.tensors() if id(t) not in kept]
        for cell in cells:
            cell.m.fill_(1e30)
        try:
            yield
        finally:
            for dst, src in saved:
                dst.copy_(src)

    def _capture(self):
        # Warm up on a side stream (Triton compiles, cuBLAS workspaces), as capture requires, on the
        # adopted state itself (_state_kept: the prefill state survives, and is never copied).
        with self._state_kept():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self._step()

    def start(self, state: LMState) -> "GraphDecoder":
        """Load `state` into the buffers, taking it over: each block's state is dropped from it once copied
        (so the two copies of a whole state never coexist); pass a clone to keep yours."""
        for j, dst in enumerate(self.state.blocks):
            src = state.blocks[j]
            if src is not dst:
                for a, b in zip(dst.tensors(), src.tensors()):
                    a.copy_(b)
            state.blocks[j] = None
        return self

    def __call__(self, token: torch.Tensor) -> torch.Tensor:
        self.token.copy_(token[:, None])
        if self.graph is None:
            return self._step()
        self.graph.replay()
        return self.logits


def _cells(state) -> list:
    """The cell states (MLSTMState, SLSTMState) of an LMState, in block order."""
    return [getattr(b, "cell", b) for b in state.blocks]


def graph_decoder(model: torch.nn.Module, state: LMState) -> GraphDecoder:
    """The model's cached runner for this batch size (captured on first use, on `state` itself), loaded
    with `state`, which it takes over (see GraphDecoder.start): pass a clone to keep yours."""
    runner = _RUNNERS.get(model)
    if runner is None or runner.key != _key(model, state):
        _RUNNERS.pop(model, None)  # free the old graph's memory before capturing a new one
        runner = _RUNNERS[model] = GraphDecoder(model, state)
        state = LMState(list(state.blocks))  # the runner holds these blocks now: only the caller's list empties
    return runner.start(state)
