"""`xlstm-zoo`: a thin command line over the Python API.

    xlstm-zoo ls ['xlstm-*']            xlstm-zoo show NAME [key=value ...]
    xlstm-zoo cp NAME DEST.yaml         xlstm-zoo validate FILE...
    xlstm-zoo schema [--kind K]         xlstm-zoo build NAME --dry-run [--dtype bfloat16] [key=value ...]
    xlstm-zoo convert / train / eval / reproduce / merge / bench / lm-eval ...

User errors (bad YAML, unknown names, missing files) print one line per problem and exit non-zero,
never a traceback. ls / show / cp / validate / schema never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path

from ..schemas.errors import ConfigError, Problem
from ..schemas.export import DOCUMENTS, schema_path, schema_text
from ..schemas.kernels import DTYPES
from ..schemas.yaml_io import dump_yaml, load_yaml, validate_document
from .index import SOURCE_PREFIXES, entry_paths, get_config, get_entry, list_models, split_name
from .pipelines.recipes import load_recipe
from .quantize import add_quantize

SCHEMA_COMMENT = re.compile(r"^# yaml-language-server: \$schema=(\S+)")

# Verbs implemented elsewhere: verb -> module whose main(argv) runs it (imported only when used).
DELEGATED = {
    "convert": "checkpoints.convert",
    "train": "pipelines:train_main",
    "eval": "pipelines:eval_main",
    "reproduce": "pipelines:reproduce_main",
    "merge": "pipelines:merge_main",
    "bench": "bench.cli",
    "lm-eval": "lm_eval",
}


def cmd_ls(args) -> int:
    for name in list_models(args.pattern or "*", pretrained=args.pretrained, capability=args.capability):
        entry = get_entry(name)
        print(f"{name:<28} {entry.model.kind:<15} {entry.description}")
    return 0


def cmd_show(args) -> int:
    entry = get_entry(args.name)
    data = entry.model_dump(mode="json")
    data["model"] = get_config(args.name, args.overrides).model_dump(mode="json")
    print(dump_yaml(data), end="")
    return 0


def cmd_cp(args) -> int:
    """Copy an entry for editing: comments kept; the $schema comment re-pointed relative to DEST."""
    source = entry_paths()[split_name(args.name)[0]]
    dest = Path(args.dest)
    if dest.exists() and not args.force:
        raise FileExistsError(f"{dest} exists (use --force to overwrite)")
    text = dump_yaml(load_yaml(source).data)
    schema = os.path.relpath(schema_path("zoo-entry"), dest.resolve().parent)
    lines = source.read_text().splitlines()
    header = [SCHEMA_COMMENT.sub(f"# yaml-language-server: $schema={schema}", lines[0])] if lines and \
        SCHEMA_COMMENT.match(lines[0]) else []
    body = text.splitlines()
    if body and SCHEMA_COMMENT.match(body[0]):
        body = body[1:]
    dest.write_text("\n".join(header + body) + "\n")
    print(f"copied {args.name} to {dest}")
    return 0


RECIPE_KEYS = {"data", "optimizer", "schedule", "train", "eval", "adapter"}
"""Top-level keys only recipes have: a file without $schema comment holding one is a recipe."""


def document_kind(path: str, doc=None) -> str:
    """The document kind a YAML file declares in its $schema comment; without one, `model` for a file holding
    only a model config (bare or under `model:`, as build_model takes it), `recipe` for one with a recipe's keys
    (`doc`: the file's document), else a zoo entry."""
    try:  # an unreadable or non-UTF-8 file is load_yaml's to report, with its position
        first = Path(path).read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    except OSError:
        first = ""
    match = SCHEMA_COMMENT.match(first)
    if match:
        for kind in DOCUMENTS:
            if match.group(1).endswith(f"{kind}.schema.json"):
                return kind
    data = doc.data if doc is not None and isinstance(doc.data, dict) else {}
    if set(data) == {"model"} or "kind" in data and "model" not in data:
        return "model"
    return "recipe" if "name" not in data and RECIPE_KEYS & set(data) else "zoo-entry"


def cmd_validate(args) -> int:
    problems: list[Problem] = []
    for path in args.files:
        try:
            doc = load_yaml(path)
            kind = document_kind(path, doc)
            if kind == "model":
                get_config(path)  # validated as build_model reads it
            elif kind == "recipe":
                load_recipe(path)  # as train reads it: its model's name and overrides too
            else:
                validate_document(DOCUMENTS[kind], doc)
        except ConfigError as e:
            problems += e.problems
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{len(args.files)} file(s) valid")
    return 1 if problems else 0


def cmd_schema(args) -> int:
    if args.write:
        path = schema_path(args.kind)
        path.write_text(schema_text(args.kind))
        print(f"wrote {path}")
    else:
        print(schema_text(args.kind), end="")
    return 0


def cmd_build(args) -> int:
    if not args.name.startswith(SOURCE_PREFIXES):
        get_config(args.name, args.overrides)  # a bad config is refused before torch is imported (seconds)
    import torch

    from .builder import build_model
    from .factory import parse_dtype
    from .quantize import tensor_bytes

    dtype = parse_dtype(args.dtype)
    if args.quantize and args.dry_run:
        raise ValueError("--quantize needs real weights: drop --dry-run")
    model = build_model(args.name, overrides=args.overrides, device="meta" if args.dry_run else args.device,
                        dtype=None if args.dry_run else dtype, quantize=args.quantize,
                        quantize_backend=args.quantize_backend)
    total = sum(p.numel() for p in model.parameters())
    size = total * torch.empty((), dtype=dtype).element_size() if args.dry_run else \
        sum(tensor_bytes(p) for p in model.parameters())
    what = f"{args.dtype}, {args.quantize} ({args.quantize_backend})" if args.quantize else args.dtype
    print(f"{args.name}: {model.config.kind}, {total:,} parameters, {size / 2**30:.2f} GiB of weights in {what}"
          + (" (built on meta)" if args.dry_run else f" (built on {args.device})"))
    return 0


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override a config value")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="xlstm-zoo", description="A declarative model zoo for xLSTM.")
    sub = root.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("ls", help="list entries (fnmatch pattern)")
    p.add_argument("pattern", nargs="?")
    p.add_argument("--pretrained", action="store_true", help="only entries with weights")
    p.add_argument("--capability", help="only entries with this capability (e.g. generate)")
    p.set_defaults(run=cmd_ls)
    p = sub.add_parser("show", help="print an entry with its fully resolved model config")
    p.add_argument("name")
    _overrides(p)
    p.set_defaults(run=cmd_show)
    p = sub.add_parser("cp", help="copy an entry to a YAML file to edit")
    p.add_argument("name")
    p.add_argument("dest")
    p.add_argument("--force", action="store_true")
    p.set_defaults(run=cmd_cp)
    p = sub.add_parser("validate", help="validate YAML files (entries or recipes); all problems at once")
    p.add_argument("files", nargs="+")
    p.set_defaults(run=cmd_validate)
    p = sub.add_parser("schema", help="print the JSON Schema of a document kind")
    p.add_argument("--kind", default="zoo-entry", choices=sorted(DOCUMENTS))
    p.add_argument("--write", action="store_true", help="rewrite the committed schema file")
    p.set_defaults(run=cmd_schema)
    p = sub.add_parser("build", help="build a model and report its size")
    p.add_argument("name")
    p.add_argument("--dry-run", action="store_true", help="build on the meta device (no memory)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--device", default="cpu")
    add_quantize(p)
    _overrides(p)
    p.set_defaults(run=cmd_build)
    for verb in DELEGATED:
        sub.add_parser(verb, help=f"see: xlstm-zoo {verb} --help", add_help=False)
    return root


def _parse(root: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, with overrides accepted after options too (`build NAME --dry-run key=value`):
    argparse fills a positional list once, so the later ones come back as extras."""
    args, extra = root.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any(e.startswith("-") for e in extra)):
        root.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides += extra
    return args


def _delegate(verb: str, argv: list[str]) -> int:
    module, _, func = DELEGATED[verb].partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), func or "main")(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in DELEGATED:
            return _delegate(argv[0], argv[1:])
        args = _parse(parser(), argv)
        return args.run(args)
    except ConfigError as e:
        print(e, file=sys.stderr)
    except (LookupError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
    except ImportError as e:
        print(f"error: {e} (is the matching extra installed? e.g. pip install 'xlstm-zoo[dev]')", file=sys.stderr)
    except KeyboardInterrupt:  # wherever Ctrl-C lands (files are written under temporary names, then renamed)
        print("xlstm-zoo: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
