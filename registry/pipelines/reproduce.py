"""Re-establish an entry's recorded numbers: run each recipe its results name, and each lm-eval task on the
model a recipe trained (or on the entry's weights), then compare within tolerance."""

from __future__ import annotations

import time
from pathlib import Path

from ...schemas.entry import Result, ZooEntry
from ...schemas.yaml_io import Overrides
from ..index import get_entry
from .recipes import entry_recipe, load_recipe, recipe_tokenizer
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
    reproduced = [r for r in entry.results if r.status == "reproduced"]
    runs: dict[str, tuple[dict, float]] = {}
    for role in dict.fromkeys(r.recipe for r in reproduced if r.recipe):
        start = time.perf_counter()
        metrics = train(load_recipe(entry_recipe(name, role), overrides), out / role)
        runs[role] = metrics, time.perf_counter() - start
    evals = _lm_eval_runs(name, entry, [r for r in reproduced if r.lm_eval_task], out, overrides)
    rows = []
    for result in entry.results:
        row = {"task": result.task, "dataset": result.dataset, "metric": result.metric, "recipe": result.recipe or "",
               "recorded": result.value, "bound": bound(result), "measured": None, "seconds": None, "passed": None}
        if result.status == "reproduced" and result.lm_eval_task:
            from ..lm_eval import metric_value

            results, seconds = evals[_eval_key(result)]
            measured = metric_value(results, result.lm_eval_task, result.metric)
            row.update(measured=measured, seconds=seconds, passed=measured is not None and within(result, measured))
        elif result.status == "reproduced" and result.recipe in runs:
            metrics, seconds = runs[result.recipe]
            measured = metrics.get(result.metric)
            row.update(measured=measured, seconds=seconds, step=metrics["step"],
                       passed=measured is not None and within(result, measured))
        rows.append(row)
    return rows


def _eval_key(result: Result) -> tuple:
    return result.recipe, result.weights, result.num_fewshot


def _lm_eval_runs(name: str, entry: ZooEntry, results: list[Result], out: Path, overrides: Overrides) -> dict:
    """(recipe, weights, num_fewshot) -> (lm-eval results, seconds): the tasks of each group in one run, on the
    model the recipe trained into out/RECIPE/model (tokenized as it was trained) or on the entry's weights."""
    if not results:
        return {}
    from ..lm_eval import XLSTMZooLM, run_tasks

    evals = {}
    for key in dict.fromkeys(map(_eval_key, results)):
        recipe, weights, num_fewshot = key
        if recipe is not None:
            lm = XLSTMZooLM(f"local-dir:{out / recipe / 'model'}",
                            tokenizer=recipe_tokenizer(load_recipe(entry_recipe(name, recipe), overrides).data))
        else:
            lm = XLSTMZooLM(f"{name}.{weights}" if weights else name)
        tasks = list(dict.fromkeys(r.lm_eval_task for r in results if _eval_key(r) == key))
        start = time.perf_counter()
        evals[key] = run_tasks(lm, tasks, num_fewshot=num_fewshot), time.perf_counter() - start
    return evals


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
