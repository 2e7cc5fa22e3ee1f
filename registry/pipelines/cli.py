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
    parser = _parser("eval", "a run directory (from `train --out`), a zoo entry (its weights) or a recipe file; "
                             "with --data also local-dir:PATH or hf-hub:ORG/NAME")
    group = parser.add_argument_group("stateful perplexity of a file (--data)")
    group.add_argument("--data", help="a local text, jsonl or parquet file (zoo-data:NAME for a shipped one)")
    group.add_argument("--format", choices=["text", "json", "parquet"], help="default: from the file's suffix")
    group.add_argument("--text-field", default="text", help="column of jsonl/parquet rows holding the text")
    group.add_argument("--tokenizer", help="byte, gpt2, char:FILE, a tokenizer directory or hf-hub:ORG/NAME "
                                           "(default: the run's recipe, or the checkpoint's tokenizer.json)")
    group.add_argument("--batch-size", type=int, default=8, help="documents per forward call")
    group.add_argument("--chunk-size", type=int, default=1024, help="positions per forward call")
    group.add_argument("--dtype", default="auto")
    add_quantize(parser)
    args = parser.parse_intermixed_args(argv)
    if args.data is not None:
        return _perplexity_main(args)
    from ..data import make_task
    from .distributed import setup
    from .evaluate import evaluate
    from ..quantize import quantize_model
    from .recipes import build, is_file_spec, load_recipe

    if args.dtype != "auto":
        raise ValueError(f"eval --dtype {args.dtype}: applies to --data; recipe evaluation runs in the recipe's "
                         "train.precision (override it, e.g. train.precision=bf16)")
    run_dir = Path(args.spec)
    if (run_dir / "recipe.yaml").is_file():
        recipe = load_recipe(run_dir / "recipe.yaml", args.overrides)
        model = {"name": f"local-dir:{run_dir.resolve() / 'model'}", "overrides": {}, "pretrained": False}
    elif is_file_spec(args.spec):
        recipe = load_recipe(Path(args.spec), args.overrides)
        model = {}
    else:
        _check_entry_spec(args.spec)
        recipe = load_recipe(_eval_recipe_file(args.spec), args.overrides)
        model = {"pretrained": recipe.model.pretrained or True}
    recipe.model = recipe.model.model_copy(update=model)
    device = setup().device
    task = make_task(recipe.data)
    model = build(recipe, task, device)
    if args.quantize:
        model = quantize_model(model, args.quantize, args.quantize_backend)
    metrics = evaluate(model, task, recipe.eval.batch_size, recipe.eval.max_batches, device, recipe.train.precision)
    print(json.dumps(metrics))
    return 0


def _perplexity_main(args) -> int:
    """Documents of one file, each scored whole with the state carried (evaluate.perplexity)."""
    from ...schemas.recipe import TextData
    from ..builder import build_for_eval
    from ..factory import parse_dtype
    from ..data.text import iter_documents
    from ..data.tokenizer_specs import check_vocabulary, load_tokenizer
    from .distributed import setup
    from ..quantize import quantize_model
    from .evaluate import perplexity
    from .recipes import load_recipe, recipe_tokenizer

    if args.overrides:
        raise ValueError(f"eval --data: overrides ({' '.join(args.overrides)}) only apply to recipe evaluation")
    spec, tokenizer_spec = args.spec, args.tokenizer
    run_dir = Path(args.spec)
    if (run_dir / "recipe.yaml").is_file():
        spec = f"local-dir:{run_dir.resolve() / 'model'}"
        tokenizer_spec = tokenizer_spec or recipe_tokenizer(load_recipe(run_dir / "recipe.yaml").data)
    documents = list(iter_documents(TextData(files=[args.data], format=args.format, text_field=args.text_field)))
    model, directory = build_for_eval(spec, device=setup().device, dtype=parse_dtype(args.dtype))
    if args.quantize:
        model = quantize_model(model, args.quantize, args.quantize_backend)
    tokenizer = load_tokenizer(tokenizer_spec, directory)
    check_vocabulary(tokenizer, model.config.vocab_size, tokenizer_spec or directory)
    print(json.dumps(perplexity(model, tokenizer, documents, args.batch_size, args.chunk_size)))
    return 0


def _check_entry_spec(spec: str) -> None:
    """What `eval SPEC` (without --data) takes when SPEC is no run directory or recipe file: a zoo entry."""
    from ..index import SOURCE_PREFIXES

    if spec.startswith(SOURCE_PREFIXES):
        raise ValueError(f"{spec}: a checkpoint directory is evaluated on a file: add --data FILE")
    if Path(spec).is_dir():
        raise ValueError(f"{spec}: not a run directory (no recipe.yaml); a checkpoint directory is evaluated on a "
                         f"file: eval local-dir:{spec} --data FILE")
    if "/" in spec:
        raise ValueError(f"{spec}: no such run directory (a `train --out` directory with recipe.yaml), recipe file "
                         "or zoo entry")


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
    if args.out is None and not any(out.iterdir()):  # only reported results: nothing was run
        out.rmdir()
    else:
        print(f"runs in {out}")
    return 1 if any(r["passed"] is False for r in rows) else 0


def merge_main(argv: list[str]) -> int:
    """Fold a LoRA run's adapter into its base: a plain checkpoint directory, in the base's weight mode."""
    parser = argparse.ArgumentParser(prog="xlstm-zoo merge")
    parser.add_argument("adapter", type=Path, help="an adapter directory (a LoRA run's model/)")
    parser.add_argument("--out", required=True, type=Path, help="where the merged checkpoint goes")
    parser.add_argument("overrides", nargs="*", help="overrides of the base, e.g. model.kernels.mode=inference")
    args = parser.parse_intermixed_args(argv)
    from ..builder import build_model
    from ..checkpoints import CheckpointError, adapters, save_pretrained

    if not adapters.is_adapter_dir(args.adapter):
        raise ValueError(f"{args.adapter}: no {adapters.CONFIG_NAME}: not an adapter directory")
    try:
        base, overrides = adapters.read_base(args.adapter, args.overrides)
        model = build_model(base.name, pretrained=base.pretrained, overrides=overrides)
        weight_mode = getattr(model.config, "weight_mode", None)
        adapters.merge(adapters.attach(model, args.adapter), weight_mode)
    except CheckpointError as exc:
        print(f"xlstm-zoo merge: error: {exc}", file=sys.stderr)
        return 1
    save_pretrained(model, args.out)
    print(f"merged {args.adapter} into {base.name}: {args.out}")
    return 0
