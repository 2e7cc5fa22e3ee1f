"""Re-establish an entry's recorded numbers: run each recipe its results name, compare within tolerance."""

from __future__ import annotations

import time
from pathlib import Path

from ...schemas.entry import Result
from ...schemas.yaml_io import Overrides
from ..index import get_entry
from .recipes import entry_recipe, load_recipe
from .train import train


def within(result: Result, measured: float) -> bool:
    if result.compare == "at_least":
        return measured >= result.value - result.tolerance
    if result.compare == "at_most":
        return measured <= result.value + result.tolerance
    return abs(measured - result.value) <= result.tolerance


def reproduce(name: str, out: Path, overrides: Overrides = None) -> list[dict]:
    """One row per result of the entry; `passed` is None for reported numbers (quoted, not re-run)."""
    entry = get_entry(name)
    runs: dict[str, tuple[dict, float]] = {}
    for role in dict.fromkeys(r.recipe for r in entry.results if r.status == "reproduced" and r.recipe):
        start = time.perf_counter()
        metrics = train(load_recipe(entry_recipe(name, role), overrides), out / role)
        runs[role] = metrics, time.perf_counter() - start
    rows = []
    for result in entry.results:
        row = {"task": result.task, "dataset": result.dataset, "metric": result.metric, "recipe": result.recipe or "",
               "recorded": result.value, "bound": bound(result), "measured": None, "seconds": None, "passed": None}
        if result.status == "reproduced" and result.recipe in runs:
            metrics, seconds = runs[result.recipe]
            measured = metrics.get(result.metric)
            row.update(measured=measured, seconds=seconds, step=metrics["step"],
                       passed=measured is not None and within(result, measured))
        rows.append(row)
    return rows


def bound(result: Result) -> str:
    if result.compare == "at_least":
        return f">= {result.value - result.tolerance:g}"
    if result.compare == "at_most":
        return f"<= {result.value + result.tolerance:g}"
    return f"{result.value:g} +- {result.tolerance:g}"


def table(rows: list[dict]) -> str:
    """A Markdown table of recorded vs measured."""
    head = ["task", "dataset", "metric", "recipe", "recorded", "measured", "steps", "time", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        status = "reported" if r["passed"] is None else "PASS" if r["passed"] else "FAIL"
        measured = "-" if r["measured"] is None else f"{r['measured']:.4g}"
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.0f} s"
        cells = [r["task"], r["dataset"], r["metric"], r["recipe"], r["bound"], measured, str(r.get("step", "-")),
                 seconds, status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
