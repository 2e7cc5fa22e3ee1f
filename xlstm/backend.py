"""Runs the mLSTM / sLSTM kernels a model's KernelConfig names, with state in and out.

Kernels are looked up on first call, so building a model (on any device, meta included) never imports
Triton or compiles anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Optional

import torch

from ..kernels import (get_mlstm_kernel, get_mlstm_sequence_kernel, get_mlstm_step_kernel, get_slstm_kernel,
                       triton_available)
from ..schemas.kernels import KernelConfig
from .state import MLSTMState, SLSTMState

# Below this many tokens, inference mode runs the recurrent loop instead of the chunkwise kernel.
SHORT_SEQUENCE = 16

_STEP_IN_PLACE = contextvars.ContextVar("step_in_place", default=False)


@contextlib.contextmanager
def states_updated_in_place():
    """Inside, single-token steps write the new mLSTM C into the state they were given (when it is a
    contiguous float32 tensor) instead of a new one. For owners of static state buffers (the CUDA-graph
    decoder): the largest state then needs no copy per token. Elsewhere states are never written into."""
    token = _STEP_IN_PLACE.set(True)
    try:
        yield
    finally:
        _STEP_IN_PLACE.reset(token)


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _in_place(c: torch.Tensor) -> dict:
    """The step kernels' `c_out` argument inside `states_updated_in_place`, else nothing."""
    return {"c_out": c} if _STEP_IN_PLACE.get() and c.dtype == torch.float32 and c.is_contiguous() else {}


class MLSTMBackend:
    """q, k (B, NH, S, DHQK), v (B, NH, S, DHV), i, f (B, NH, S) -> h (B, NH, S, DHV), MLSTMState."""

    def __init__(self, config: KernelConfig):
        self.config = config

    @functools.cached_property
    def chunkwise(self):
        return get_mlstm_kernel(self.config.chunkwise_kernel)

    @functools.cached_property
    def sequence(self):
        return get_mlstm_sequence_kernel(self.config.sequence_kernel)

    @functools.cached_property
    def step(self):
        return get_mlstm_step_kernel(self.config.step_kernel)

    def __call__(self, q, k, v, i, f, state: Optional[MLSTMState] = None):
        cfg = self.config
        if torch.is_autocast_enabled(q.device.type):
            q, k, v = (t.to(_dtype(cfg.autocast_kernel_dtype)) for t in (q, k, v))
        S = q.shape[2]
        c, n, m = (None, None, None) if state is None else (state.c, state.n, state.m)
        if cfg.mode == "inference" and S == 1:
            if state is None:
                B, NH, _, DHQK = q.shape
                c = q.new_zeros(B, NH, DHQK, v.shape[-1], dtype=torch.float32)
                n = q.new_zeros(B, NH, DHQK, dtype=torch.float32)
                m = q.new_zeros(B, NH, 1, dtype=torch.float32)
            h, (c, n, m) = self.step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[..., :1], f[..., :1],
                                     c, n, m, eps=cfg.eps, **_in_place(c))
            h = h.unsqueeze(2)
        else:
            kernel = self.sequence if cfg.mode == "inference" and S < SHORT_SEQUENCE else self.chunkwise
            h, (c, n, m) = kernel(q, k, v, i, f, c_initial=c, n_initial=n, m_initial=m,
                                  return_last_states=True, chunk_size=cfg.chunk_size, eps=cfg.eps)
        return h, self._state(c, n, m)

    def _state(self, c, n, m) -> MLSTMState:
        state_dtype = _dtype(self.config.inference_state_dtype)
        return MLSTMState(c.to(state_dtype), n.to(state_dtype), m.to(state_dtype))

    def projects_gates(self, x: torch.Tensor) -> bool:
        """Whether a single-token step can take the gate projection into the Triton step kernel."""
        cfg = self.config
        return cfg.mode == "inference" and (cfg.step_kernel == "triton" or (
            cfg.step_kernel == "auto" and x.is_cuda and triton_available()))

    def step_projecting_gates(self, q, k, v, x, gate_weights, gate_soft_cap, state: MLSTMState):
        """One token (S = 1) whose gates the kernel projects from the normed block input x (B, 1, D):
        gate_weights = (w_i, b_i, w_f, b_f); i, f = soft_cap(x w^T + b). Needs a state."""
        from ..kernels.triton.mlstm_step import mlstm_step_projecting_gates

        h, (c, n, m) = mlstm_step_projecting_gates(q[:, :, 0], k[:, :, 0], v[:, :, 0], x[:, 0], gate_weights,
                                                   gate_soft_cap, state.c, state.n, state.m, eps=self.config.eps,
                                                   **_in_place(state.c))
        return h.unsqueeze(2), self._state(c, n, m)


class SLSTMBackend:
    """wx (B, S, 4, NH, DH), r (NH, DH, 4, DH), b (NH, 4, DH) -> y (B, S, NH, DH), SLSTMState."""

    def __init__(self, config: KernelConfig):
        self.config = config

    @functools.cached_property
    def kernel(self):
        return get_slstm_kernel(self.config.slstm_kernel)

    def __call__(self, wx, r, b, state: Optional[SLSTMState] = None):
        initial = {} if state is None else dict(c_initial=state.c, n_initial=state.n, h_initial=state.h,
                                                m_initial=state.m)
        y, (c, n, h, m) = self.kernel(wx, r, b, return_last_states=True, **initial)
        state_dtype = _dtype(self.config.inference_state_dtype)
        return y, SLSTMState(*(t.to(state_dtype) for t in (c, n, h, m)))
