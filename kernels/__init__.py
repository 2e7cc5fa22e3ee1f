"""mLSTM / sLSTM compute behind one interface.

    fn = get_mlstm_kernel("chunkwise--triton")      # or chunkwise--native, parallel--native, chunkwise--auto
    h, (c, n, m) = fn(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None,
                      return_last_states=True, chunk_size=64, eps=1e-6)

The signature is the one of mlstm_kernels, so functions can be swapped either way. Reference names
(`chunkwise--triton_xl_chunk`, `native_sequence__native`, ...) are accepted and mapped. `auto` picks the
Triton kernel for CUDA tensors when Triton is installed and the native one otherwise; an explicitly
requested Triton kernel that cannot run raises `KernelUnavailableError`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

from ..schemas.kernels import canonical_kernel_name
from . import mlstm_native, slstm_native

__all__ = [
    "KernelUnavailableError", "get_mlstm_kernel", "get_mlstm_sequence_kernel", "get_mlstm_step_kernel",
    "get_slstm_kernel", "mlstm_kernel_names", "triton_available",
]


class KernelUnavailableError(RuntimeError):
    """A requested kernel cannot run here (no Triton, no GPU, unknown name)."""


def triton_available() -> bool:
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    return True


def _triton(module: str, attr: str) -> Callable:
    """A Triton kernel, imported on first use so that importing this package never needs Triton."""
    if not triton_available():
        raise KernelUnavailableError(
            f"the Triton kernel {attr!r} needs the `triton` package: pip install 'xlstm-zoo[triton]', "
            "or choose a native kernel (e.g. kernels.chunkwise_kernel=chunkwise--native)"
        )
    return getattr(importlib.import_module(f"{__name__}.triton.{module}"), attr)


def _auto(native: Callable, module: str, attr: str) -> Callable:
    """Dispatch on the tensors' device: Triton on CUDA when available, native otherwise."""

    def run(*args, **kwargs):
        if args[0].is_cuda and triton_available():
            return _triton(module, attr)(*args, **kwargs)
        return native(*args, **kwargs)

    run.__name__ = f"auto_{attr}"
    return run


_MLSTM = {
    "chunkwise--native": lambda: mlstm_native.mlstm_chunkwise,
    "parallel--native": lambda: mlstm_native.mlstm_parallel,
    "chunkwise--triton": lambda: _triton("mlstm_chunkwise", "mlstm_chunkwise"),
    "chunkwise--auto": lambda: _auto(mlstm_native.mlstm_chunkwise, "mlstm_chunkwise", "mlstm_chunkwise"),
}
_SEQUENCE = {
    "native": lambda: mlstm_native.mlstm_sequence,
    "triton": lambda: _triton("mlstm_step", "mlstm_sequence"),
    "auto": lambda: _auto(mlstm_native.mlstm_sequence, "mlstm_step", "mlstm_sequence"),
}
_STEP = {
    "native": lambda: mlstm_native.mlstm_step,
    "triton": lambda: _triton("mlstm_step", "mlstm_step"),
    "auto": lambda: _auto(mlstm_native.mlstm_step, "mlstm_step", "mlstm_step"),
}
_SLSTM = {
    "native": lambda: slstm_native.slstm_sequence,
    "triton": lambda: _triton("slstm", "slstm_sequence"),
    "auto": lambda: _auto(slstm_native.slstm_sequence, "slstm", "slstm_sequence"),
}


def _lookup(table: dict, name: str, what: str) -> Callable:
    key = canonical_kernel_name(name)
    if key not in table:
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KernelUnavailableError(f"unknown {what} kernel {name!r}{hint} (known: {', '.join(table)})")
    return table[key]()


def mlstm_kernel_names() -> list[str]:
    return list(_MLSTM)


def get_mlstm_kernel(name: str) -> Callable:
    """Chunkwise / parallel mLSTM kernel (training and prefill)."""
    return _lookup(_MLSTM, name, "mLSTM")


def get_mlstm_sequence_kernel(name: str) -> Callable:
    """Recurrent mLSTM over a sequence, same signature as the chunkwise kernels."""
    return _lookup(_SEQUENCE, name, "mLSTM sequence")


def get_mlstm_step_kernel(name: str) -> Callable:
    """Single-step mLSTM: fn(q, k, v, i, f, c, n, m, eps=1e-6) -> (h, (c, n, m))."""
    return _lookup(_STEP, name, "mLSTM step")


def get_slstm_kernel(name: str) -> Callable:
    """sLSTM recurrence: fn(wx, r, b, *, c_initial, n_initial, h_initial, m_initial, return_last_states)."""
    return _lookup(_SLSTM, name, "sLSTM")
