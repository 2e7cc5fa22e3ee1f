"""mLSTM in plain PyTorch: parallel, chunkwise and recurrent (step / sequence) forms.

All forms share the mlstm_kernels calling convention (q-scaling by DHQK^-1/2, exponential input gate,
log-sigmoid forget gate, phantom zero initial state with m = 0) so they agree to rounding, final states
included. They compute in float32 (float64 stays float64) and return h in the input dtype and states in
the compute dtype.

Shapes: q, k (B, NH, S, DHQK); v (B, NH, S, DHV); i, f (B, NH, S);
states c (B, NH, DHQK, DHV), n (B, NH, DHQK), m (B, NH, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mlstm_chunkwise", "mlstm_parallel", "mlstm_sequence", "mlstm_step"]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _initial_states(q, v, c, n, m, dtype):
    B, NH, _, DHQK = q.shape
    DHV = v.shape[-1]
    if c is None:
        c = q.new_zeros(B, NH, DHQK, DHV, dtype=dtype)
    if n is None:
        n = q.new_zeros(B, NH, DHQK, dtype=dtype)
    if m is None:
        m = q.new_zeros(B, NH, 1, dtype=dtype)
    return c.to(dtype), n.to(dtype), m.to(dtype)


def _chunks(q, k, v, i, f, c, n, m, L: int, eps: float):
    """Chunkwise mLSTM over a sequence whose length is a multiple of L (all tensors in compute dtype)."""
    B, NH, S, DHQK = q.shape
    DHV = v.shape[-1]
    NC = S // L
    q = q.view(B, NH, NC, L, DHQK) * DHQK**-0.5
    k = k.view(B, NH, NC, L, DHQK)
    v = v.view(B, NH, NC, L, DHV)
    i = i.view(B, NH, NC, L)
    logf = F.logsigmoid(f).view(B, NH, NC, L)

    b = logf.cumsum(-1)  # decay from chunk start up to and including t
    g = b[..., -1]  # whole-chunk decay
    a = g.unsqueeze(-1) - b + i  # log weight of input s in the chunk-end state

    # Inter-chunk recurrence: the state before each chunk.
    c_before, n_before, m_before = [], [], []
    for kc in range(NC):
        c_before.append(c)
        n_before.append(n)
        m_before.append(m)
        m_new = torch.maximum(g[..., kc, None] + m, a[..., kc, :].amax(-1, keepdim=True))
        w = torch.exp(a[..., kc, :] - m_new).unsqueeze(-1)  # (B, NH, L, 1)
        decay = torch.exp(g[..., kc, None] + m - m_new)  # (B, NH, 1)
        c = decay.unsqueeze(-1) * c + (k[:, :, kc] * w).transpose(-1, -2) @ v[:, :, kc]
        n = decay * n + (k[:, :, kc] * w).sum(-2)
        m = m_new
    c_prev = torch.stack(c_before, 2)  # (B, NH, NC, DHQK, DHV)
    n_prev = torch.stack(n_before, 2)  # (B, NH, NC, DHQK)
    m_prev = torch.stack(m_before, 2)  # (B, NH, NC, 1)

    # Intra-chunk: log D_ts = sum_{s<tau<=t} log f_tau + i_s, as a masked cumsum (stable for long chunks).
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    strict = causal.tril(-1)
    lf = logf.unsqueeze(-1).expand(*logf.shape, L).masked_fill(~strict, 0.0)
    log_d = lf.cumsum(-2) + i.unsqueeze(-2)
    log_d = log_d.masked_fill(~causal, float("-inf"))
    m_intra = log_d.amax(-1)  # (B, NH, NC, L)
    m_inter = b + m_prev  # (B, NH, NC, L)
    m_t = torch.maximum(m_intra, m_inter)
    d = torch.exp(log_d - m_t.unsqueeze(-1))
    s = (q @ k.transpose(-1, -2)) * d
    inter = torch.exp(m_inter - m_t).unsqueeze(-1)
    num = inter * (q @ c_prev) + s @ v
    den = inter.squeeze(-1) * (q @ n_prev.unsqueeze(-1)).squeeze(-1) + s.sum(-1)
    h = num / (torch.maximum(den.abs(), torch.exp(-m_t)) + eps).unsqueeze(-1)
    return h.reshape(B, NH, S, DHV), c, n, m


def mlstm_chunkwise(
    q, k, v, i, f, *, c_initial=None, n_initial=None, m_initial=None,
    return_last_states=False, chunk_size=64, eps=1e-6,
):
    """Chunkwise mLSTM for any length: full chunks of `chunk_size`, then one exact shorter chunk."""
    dtype = _compute_dtype(q)
    c, n, m = _initial_states(q, v, c_initial, n_initial, m_initial, dtype)
    S = q.shape[2]
    L = max(1, min(chunk_size, S))
    main = (S // L) * L
    pieces = []
    for start, stop, length in ((0, main, L), (main, S, S - main)):
        if stop > start:
            sl = slice(start, stop)
            h, c, n, m = _chunks(
                q[:, :, sl].to(dtype), k[:, :, sl].to(dtype), v[:, :, sl].to(dtype),
                i[:, :, sl].to(dtype), f[:, :, sl].to(dtype), c, n, m, length, eps,
            )
            pieces.append(h)
    h = (torch.cat(pieces, 2) if pieces else q.new_zeros(*v.shape[:2], 0, v.shape[-1], dtype=dtype)).to(q.dtype)
    return (h, (c, n, m)) if return_last_states else h


def mlstm_parallel(
    q, k, v, i, f, *, c_initial=None, n_initial=None, m_initial=None,
    return_last_states=False, chunk_size=None, eps=1e-6,
):
    """Quadratic (attention-like) form: one chunk spanning the whole sequence."""
    return mlstm_chunkwise(
        q, k, v, i, f, c_initial=c_initial, n_initial=n_initial, m_initial=m_initial,
        return_last_states=return_last_states, chunk_size=q.shape[2], eps=eps,
    )


def mlstm_step(q, k, v, i, f, c, n, m, *, eps=1e-6, c_out=None):
    """One recurrent step. q, k (B, NH, DHQK); v (B, NH, DHV); i, f (B, NH, 1); returns h (B, NH, DHV), states.
    `c_out` (optional, may be `c`): a tensor the new C is written into and returned as."""
    dtype = _compute_dtype(q)
    c, n, m = c.to(dtype), n.to(dtype), m.to(dtype)
    qs = q.to(dtype) * q.shape[-1] ** -0.5
    k, v, i = k.to(dtype), v.to(dtype), i.to(dtype)
    logf = F.logsigmoid(f.to(dtype))
    m_new = torch.maximum(logf + m, i)
    fa = torch.exp(logf + m - m_new)
    ia = torch.exp(i - m_new)
    ik = (ia * k).unsqueeze(-1)
    if c_out is None:  # one new tensor of C's size, no temporaries
        c = (fa.unsqueeze(-1) * c).addcmul_(ik, v.unsqueeze(-2))
    else:  # updated where it lies
        c = c_out if c_out.data_ptr() == c.data_ptr() else c_out.copy_(c)
        c.mul_(fa.unsqueeze(-1)).addcmul_(ik, v.unsqueeze(-2))
    n = fa * n + ia * k
    num = (qs.unsqueeze(-2) @ c).squeeze(-2)
    den = (qs * n).sum(-1, keepdim=True)
    h = num / (torch.maximum(den.abs(), torch.exp(-m_new)) + eps)
    return h.to(q.dtype), (c, n, m_new)


def mlstm_sequence(
    q, k, v, i, f, *, c_initial=None, n_initial=None, m_initial=None,
    return_last_states=False, chunk_size=None, eps=1e-6, step=mlstm_step,
):
    """Recurrent form: a loop over `step` (any step kernel with mlstm_step's signature)."""
    dtype = _compute_dtype(q)
    c, n, m = _initial_states(q, v, c_initial, n_initial, m_initial, dtype)
    hs = []
    for t in range(q.shape[2]):  # from the second step on, C is the loop's own: updated in place (no autograd)
        own = t and c.is_contiguous() and not c.requires_grad
        h, (c, n, m) = step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t, None], f[:, :, t, None], c, n, m, eps=eps,
                            **({"c_out": c} if own else {}))
        hs.append(h)
    h = torch.stack(hs, 2) if hs else q.new_zeros(*v.shape[:2], 0, v.shape[-1])
    return (h, (c, n, m)) if return_last_states else h
