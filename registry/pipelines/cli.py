"""The `train`, `eval` and `reproduce` verbs of `xlstm-zoo` (argv is what follows the verb)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..quantize import add_quantize


def _parser(verb: str, spec_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"xlstm-zoo {verb}")
    parser.add_argument("spec", help=spec_help)
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. train.seed=3 train.max_steps=100")
    return parser


def train_main(argv: list[str]) -> int:
    """User errors propagate to the CLI's main, which prints them without a traceback."""
    parser = _parser("train", "zoo entry (its `train` recipe) or recipe file")
    parser.add_argument("--out", required=True, type=Path, help="run directory: metrics, checkpoints, model, plot")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    args = parser.parse_intermixed_args(argv)
    from .recipes import load_recipe
    from .train import Diverged, train

    try:
        metrics = train(load_recipe(_recipe_file(args.spec, "train"), args.overrides), args.out, args.resume)
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(json.dumps(metrics))
    return 0


def _recipe_file(spec: str, role: str) -> Path:
    from .recipes import entry_recipe, is_file_spec

    return Path(spec) if is_file_spec(spec) else entry_recipe(spec, role)


def eval_main(argv: list[str]) -> int:
    parser = _parser("eval", "a run directory (from `train --out`), a zoo entry (its weights) or a recipe file")
    add_quantize(parser)
    args = parser.parse_intermixed_args(argv)
    from ..data import make_task
    from .distributed import setup
    from .evaluate import evaluate
    from ..quantize import quantize_model
    from .recipes import build, is_file_spec, load_recipe

    run_dir = Path(args.spec)
    if (run_dir / "recipe.yaml").is_file():
        recipe = load_recipe(run_dir / "recipe.yaml", args.overrides)
        model = {"name": f"local-dir:{run_dir.resolve() / 'model'}", "overrides": {}, "pretrained": False}
    elif is_file_spec(args.spec):
        recipe = load_recipe(Path(args.spec), args.overrides)
        model = {}
    else:
        recipe = load_recipe(_eval_recipe_file(args.spec), args.overrides)
        model = {"pretrained": recipe.model.pretrained or True}
    recipe.model = recipe.model.model_copy(update=model)
    device = setup().device
    task = make_task(recipe.data)
    model = build(recipe, task, device)
    if args.quantize:
        model = quantize_model(model, args.quantize)
    metrics = evaluate(model, task, recipe.eval.batch_size, recipe.eval.max_batches, device, recipe.train.precision)
    print(json.dumps(metrics))
    return 0


def _eval_recipe_file(name: str) -> Path:
    """An entry's `eval` recipe, else its `train` recipe (its data and evaluation settings)."""
    from .recipes import entry_recipe

    try:
        return entry_recipe(name, "eval")
    except LookupError:
        return entry_recipe(name, "train")


def reproduce_main(argv: list[str]) -> int:
    parser = _parser("reproduce", "zoo entry whose recorded results are re-run")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a new temporary directory)")
    args = parser.parse_intermixed_args(argv)
    from .reproduce import reproduce, table
    from .train import Diverged

    out = args.out or Path(tempfile.mkdtemp(prefix=f"xlstm-zoo-reproduce-{args.spec}-"))
    try:
        rows = reproduce(args.spec, out, args.overrides)
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(table(rows))
    print(f"runs in {out}")
    return 1 if any(r["passed"] is False for r in rows) else 0
