"""Independent float64 references of the cell math (a plain per-step loop, written from the equations,
sharing no code with the package), used by the kernel and model tests."""

from __future__ import annotations

import math

import torch


def mlstm_recurrence(q, k, v, i, f, c0=None, n0=None, m0=None, eps=1e-6):
    """mLSTM, one time step at a time in float64. q, k (B,NH,S,DK); v (B,NH,S,DV); i, f (B,NH,S)."""
    q, k, v, i, f = (t.double() for t in (q, k, v, i, f))
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    c = torch.zeros(B, NH, DK, DV, dtype=torch.float64) if c0 is None else c0.double()
    n = torch.zeros(B, NH, DK, dtype=torch.float64) if n0 is None else n0.double()
    m = torch.zeros(B, NH, 1, dtype=torch.float64) if m0 is None else m0.double()
    out = []
    for t in range(S):
        log_f = -torch.log1p(torch.exp(-f[:, :, t, None]))  # log sigmoid
        m_new = torch.maximum(log_f + m, i[:, :, t, None])
        f_s = torch.exp(log_f + m - m_new)
        i_s = torch.exp(i[:, :, t, None] - m_new)
        c = f_s[..., None] * c + i_s[..., None] * torch.einsum("bhk,bhv->bhkv", k[:, :, t], v[:, :, t])
        n = f_s * n + i_s * k[:, :, t]
        qs = q[:, :, t] / math.sqrt(DK)
        num = torch.einsum("bhk,bhkv->bhv", qs, c)
        den = torch.maximum((qs * n).sum(-1, keepdim=True).abs(), torch.exp(-m_new)) + eps
        out.append(num / den)
        m = m_new
    return torch.stack(out, 2), (c, n, m)


def slstm_recurrence(wx, r, b, c0=None, n0=None, h0=None, m0=None):
    """sLSTM in float64. wx (B,S,4,NH,DH) gate inputs (i,f,z,o); r (NH,DH,4,DH); b (NH,4,DH)."""
    wx, r, b = wx.double(), r.double(), b.double()
    B, S, _, NH, DH = wx.shape
    zero = torch.zeros(B, NH, DH, dtype=torch.float64)
    c, n, h, m = (zero if s is None else s.double() for s in (c0, n0, h0, m0))
    ys = []
    for t in range(S):
        raw = [wx[:, t, g] + torch.einsum("bhd,hde->bhe", h, r[:, :, g]) + b[:, g] for g in range(4)]
        ri, rf, rz, ro = raw
        log_f = -torch.log1p(torch.exp(-rf))
        m_new = torch.where(n == 0, ri, torch.maximum(ri, log_f + m))
        ig = torch.clamp(torch.exp(ri - m_new), max=1.0)
        fg = torch.clamp(torch.exp(log_f + m - m_new), max=1.0)
        c = fg * c + ig * torch.tanh(rz)
        n = fg * n + ig
        h = torch.sigmoid(ro) * c / n
        m = m_new
        ys.append(h)
    return torch.stack(ys, 1), (c, n, h, m)
