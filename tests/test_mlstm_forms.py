"""The native mLSTM forms (parallel, chunkwise, recurrent) and the sLSTM loop against float64 references.

Tolerances: the kernels compute in float32, the references in float64; after normalisation outputs are
O(1), so float32 rounding over a few hundred steps stays below 1e-4 absolute. Extreme gates (+-30) push
the stabiliser m to +-30, where exp(-m) and eps interact (trap 1), hence the relative form of the check.
"""

import pytest
import torch

from reference import mlstm_recurrence, slstm_recurrence
from xlstm_zoo.kernels import get_mlstm_kernel, get_mlstm_sequence_kernel, get_slstm_kernel

FORMS = ["parallel--native", "chunkwise--native", "sequence"]


def kernel(name):
    return get_mlstm_sequence_kernel("native") if name == "sequence" else get_mlstm_kernel(name)


def inputs(B=2, NH=2, S=37, DK=8, DV=12, gate_scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(B, NH, S, DK, generator=g), torch.randn(B, NH, S, DK, generator=g)
    v = torch.randn(B, NH, S, DV, generator=g)
    i = gate_scale * torch.randn(B, NH, S, generator=g)
    f = 3.0 + gate_scale * torch.randn(B, NH, S, generator=g)
    return q, k, v, i, f


def close(a, b, tol):
    err = (a.double() - b.double()).abs().max().item()
    scale = b.double().abs().max().item()
    assert err <= tol * max(1.0, scale), f"max error {err:.3g} (scale {scale:.3g}) > {tol}"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("S,chunk", [(37, 8), (64, 16), (1, 16), (5, 64)])
def test_forms_match_float64_recurrence(form, S, chunk):
    q, k, v, i, f = inputs(S=S)
    h, (c, n, m) = kernel(form)(q, k, v, i, f, return_last_states=True, chunk_size=chunk)
    h_ref, (c_ref, n_ref, m_ref) = mlstm_recurrence(q, k, v, i, f)
    close(h, h_ref, 1e-4)
    # states are compared after removing the stabiliser (C * exp(m) is the unstabilised memory)
    close(c * torch.exp(m[..., None]), c_ref * torch.exp(m_ref[..., None]), 1e-4)
    close(n * torch.exp(m), n_ref * torch.exp(m_ref), 1e-4)


@pytest.mark.parametrize("form", FORMS)
def test_extreme_gates(form):
    q, k, v, i, f = inputs(S=29, gate_scale=30.0, seed=1)
    i = i.clamp(-30, 30)
    f = f.clamp(-30, 30)
    h = kernel(form)(q, k, v, i, f, chunk_size=8)
    h_ref, _ = mlstm_recurrence(q, k, v, i, f)
    assert torch.isfinite(h).all()
    close(h, h_ref, 1e-4)


@pytest.mark.parametrize("form", FORMS)
def test_state_passing_equals_whole_sequence(form):
    q, k, v, i, f = inputs(S=41)
    fn = kernel(form)
    h_all, s_all = fn(q, k, v, i, f, return_last_states=True, chunk_size=8)
    h1, (c, n, m) = fn(q[:, :, :17], k[:, :, :17], v[:, :, :17], i[:, :, :17], f[:, :, :17],
                       return_last_states=True, chunk_size=8)
    h2, s2 = fn(q[:, :, 17:], k[:, :, 17:], v[:, :, 17:], i[:, :, 17:], f[:, :, 17:], c_initial=c, n_initial=n,
                m_initial=m, return_last_states=True, chunk_size=8)
    close(torch.cat([h1, h2], 2), h_all, 1e-5)
    for a, b in zip(s2, s_all):
        close(a, b, 1e-5)


def test_initial_state_matches_reference():
    q, k, v, i, f = inputs(S=19)
    g = torch.Generator().manual_seed(5)
    c0 = torch.randn(2, 2, 8, 12, generator=g)
    n0 = torch.randn(2, 2, 8, generator=g).abs()
    m0 = torch.randn(2, 2, 1, generator=g)
    h = get_mlstm_kernel("chunkwise--native")(q, k, v, i, f, c_initial=c0, n_initial=n0, m_initial=m0, chunk_size=4)
    close(h, mlstm_recurrence(q, k, v, i, f, c0, n0, m0)[0], 1e-4)


def test_gradients_match_float64():
    q, k, v, i, f = (t.double().requires_grad_() for t in inputs(S=13, DK=4, DV=4))
    h = get_mlstm_kernel("chunkwise--native")(q, k, v, i, f, chunk_size=4)
    grads = torch.autograd.grad(h.square().sum(), (q, k, v, i, f))
    h_ref, _ = mlstm_recurrence(q, k, v, i, f)
    grads_ref = torch.autograd.grad(h_ref.square().sum(), (q, k, v, i, f))
    for g, g_ref in zip(grads, grads_ref):
        assert g.abs().sum() > 0
        close(g, g_ref, 1e-8)  # float64 on both sides: only summation order differs


def test_slstm_matches_float64_recurrence():
    g = torch.Generator().manual_seed(0)
    B, S, NH, DH = 2, 9, 2, 3
    wx = 2 * torch.randn(B, S, 4, NH, DH, generator=g)
    r = 0.5 * torch.randn(NH, DH, 4, DH, generator=g)
    b = torch.randn(NH, 4, DH, generator=g)
    y, (c, n, h, m) = get_slstm_kernel("native")(wx, r, b, return_last_states=True)
    y_ref, (c_ref, n_ref, h_ref, m_ref) = slstm_recurrence(wx, r, b)
    close(y, y_ref, 1e-5)
    for a, ref in ((c, c_ref), (n, n_ref), (h, h_ref), (m, m_ref)):
        close(a, ref, 1e-5)
    # state passing
    y1, s1 = get_slstm_kernel("native")(wx[:, :4], r, b, return_last_states=True)
    y2 = get_slstm_kernel("native")(wx[:, 4:], r, b, c_initial=s1[0], n_initial=s1[1], h_initial=s1[2], m_initial=s1[3])
    close(torch.cat([y1, y2], 1), y_ref, 1e-5)
    # gradients
    wx64, r64, b64 = (t.double().requires_grad_() for t in (wx, r, b))
    grads = torch.autograd.grad(get_slstm_kernel("native")(wx64, r64, b64).sum(), (wx64, r64, b64))
    grads_ref = torch.autograd.grad(slstm_recurrence(wx64, r64, b64)[0].sum(), (wx64, r64, b64))
    for a, ref in zip(grads, grads_ref):
        close(a, ref, 1e-8)
