"""sLSTM recurrence in plain PyTorch (any device): head-wise recurrent matmul plus exponential gating.

Gate order is (i, f, z, o) everywhere. Shapes: wx (B, S, 4, NH, DH) input contributions to the gate
pre-activations; r (NH, DH, 4, DH) recurrent kernel (input unit -> gate, output unit); b (NH, 4, DH).
Returns y (B, S, NH, DH) and, with return_last_states, the states (c, n, h, m), each (B, NH, DH).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["slstm_pointwise", "slstm_sequence"]


def slstm_pointwise(raw, c, n, m):
    """Gate math of one step. raw (B, 4, NH, DH) pre-activations; returns y and the new (c, n, m)."""
    ri, rf, rz, ro = raw.unbind(1)
    logf = F.logsigmoid(rf)
    # A fresh unit (n == 0) starts its stabiliser at the input gate, as the reference CUDA kernel does.
    m_new = torch.where(n == 0, ri, torch.maximum(ri, logf + m))
    ig = torch.exp(ri - m_new).clamp(max=1.0)
    fg = torch.exp(logf + m - m_new).clamp(max=1.0)
    c = fg * c + ig * torch.tanh(rz)
    n = fg * n + ig
    y = torch.sigmoid(ro) * c / n
    return y, c, n, m_new


def slstm_sequence(
    wx, r, b, *, c_initial=None, n_initial=None, h_initial=None, m_initial=None, return_last_states=False,
):
    B, S, _, NH, DH = wx.shape
    dtype = torch.float64 if wx.dtype == torch.float64 else torch.float32
    zeros = wx.new_zeros(B, NH, DH, dtype=dtype)
    c, n, h, m = (zeros if s is None else s.to(dtype) for s in (c_initial, n_initial, h_initial, m_initial))
    r, b = r.to(dtype), b.to(dtype)
    ys = []
    for wx_t in wx.unbind(1):  # unbind: one gradient for all steps (per-step indexing would allocate S full-size zeros)
        raw = wx_t.to(dtype) + torch.einsum("bhd,hdge->bghe", h, r) + b.transpose(0, 1)
        h, c, n, m = slstm_pointwise(raw, c, n, m)
        ys.append(h)
    y = (torch.stack(ys, 1) if ys else wx.new_zeros(B, 0, NH, DH, dtype=dtype)).to(wx.dtype)
    return (y, (c, n, h, m)) if return_last_states else y
