"""What every benchmark shares: the markdown report, CUDA timers, error and bandwidth probes, versions."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata as md
import platform
import statistics
from pathlib import Path
from typing import Callable


class Report:
    """Markdown sections collected while running; printed as they come."""

    def __init__(self):
        self.parts: list[str] = []

    def table(self, title: str, header: list[str], rows: list[list]):
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_fmt(x) for x in r) + " |" for r in rows]
        self.add("\n".join(lines))

    def add(self, text: str):
        print(text + "\n", flush=True)
        self.parts.append(text)


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-2 or abs(x) >= 1e3 else f"{x:.3f}".rstrip("0").rstrip(".")
    return str(x)


def _bench(fn: Callable, grad_to_none=None) -> float:
    import triton.testing
    return float(triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="median"))


def _rel(x, ref) -> float:
    x, ref = x.detach().double(), ref.detach().double()
    return float("nan") if not x.isfinite().all() else float((x - ref).norm() / ref.norm())


def _versions() -> str:
    import torch
    vers = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for pkg in ("triton", "torchao", "mlstm_kernels", "flashrnn", "xlstm"):
        with contextlib.suppress(md.PackageNotFoundError):
            vers[pkg] = md.version(pkg)
    p = torch.cuda.get_device_properties(0)
    return (f"GPU: {p.name} ({p.multi_processor_count} SMs), date {dt.date.today()}, python {platform.python_version()}, "
            + ", ".join(f"{k} {v}" for k, v in vers.items()))


def _copy_bandwidth() -> float:
    import torch
    x = torch.empty(1 << 28, device="cuda", dtype=torch.float32)  # 1 GiB
    y = torch.empty_like(x)
    ms = _bench(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / (ms * 1e-3)


def _ms(fn: Callable, reps: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() in ms, CUDA events around each call."""
    import torch
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _write(rep: Report, what: str, out: str) -> None:
    import torch
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0).replace(" ", "-")
    path = path / f"{what}-{dt.datetime.now():%Y%m%d-%H%M}-{gpu}.md"
    path.write_text("\n\n".join(rep.parts) + "\n")
    print(f"written {path}")
