"""The run's record: one JSON object per logged step in metrics.jsonl, and a PNG of the curves."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLog:
    """Appends records to DIR/metrics.jsonl. On resume, records after the checkpoint's step are dropped first
    (the resumed run logs those steps again), and so is a line a killed run left half-written."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        kept = [r for r in read_metrics(path) if r["step"] <= resume_step] if resume_step is not None else []
        path.write_text("".join(strict_json(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(strict_json(record) + "\n")


def strict_json(record: dict) -> str:
    """One JSON line that any strict parser reads: a non-finite number is written as null."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(clean, allow_nan=False)


def read_metrics(path: Path) -> list[dict]:
    """The complete records of a metrics file (none if it does not exist)."""
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def plot(metrics_file: Path, png: Path) -> None:
    """Training loss, validation metrics and learning rate against step, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_file)
    keys = sorted({k for r in records for k in r} - {"step", "tokens_per_s"})
    panels = [[k for k in keys if not k.startswith("val_") and k != "lr"], [k for k in keys if k.startswith("val_")],
              [k for k in keys if k == "lr"]]
    panels = [p for p in panels if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for key in panel:
            points = [(r["step"], r[key]) for r in records if key in r]
            ax.plot(*zip(*points), label=key, marker="o" if key.startswith("val_") else None, markersize=3)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
