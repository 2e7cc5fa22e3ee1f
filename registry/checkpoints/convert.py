"""`xlstm-zoo convert`: checkpoints of NX-AI's `xlstm`, TiRex, transformers or NX-AI/vision-lstm into zoo directories.

    xlstm-zoo convert --from nx-ai --config CFG.yaml --weights W.safetensors|W.pt --out DIR
    xlstm-zoo convert --from tirex --weights model.ckpt --out DIR
    xlstm-zoo convert --from hf --model DIR|hf-hub:ORG/NAME --out DIR
    xlstm-zoo convert --from vil --weights vil2_tiny16_e800_in1k.th --out DIR   (architecture read off the shapes)

The output loads with `build_model("local-dir:DIR")` (and, for xLSTM Large, with transformers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...schemas.errors import ConfigError
from ...schemas.kernels import DTYPES
from .store import CheckpointError, iter_tensors, load_model_dir, load_tensors, resolve_source, save_pretrained
from .nxai import convert_nxai_state, read_nxai_yaml
from .tirex import convert_tirex_state, read_tirex_checkpoint
from .vil import infer_vil_config, load_vil, read_vil

def convert_nxai(config_path: Path, weights_path: Path, out: Path, *, dtype=None, max_shard_size="5GB") -> Path:
    """Convert NX-AI's YAML config and state_dict; the model is built on meta and filled tensor by tensor."""
    import torch

    from ..factory import instantiate

    config, backend = read_nxai_yaml(config_path)
    model = instantiate(config, device="meta", dtype=dtype or torch.float32)
    tensors = convert_nxai_state(iter_tensors(weights_path), config, backend)
    load_tensors(model, tensors, strict=True, source=str(weights_path))
    return save_pretrained(model, out, max_shard_size=max_shard_size)


def convert_tirex(weights_path: Path, out: Path, *, dtype=None, max_shard_size="5GB") -> Path:
    """Convert a TiRex `model.ckpt` (its hyper-parameters are in the file)."""
    from ..factory import instantiate

    config, state = read_tirex_checkpoint(weights_path)
    model = instantiate(config, device="meta", dtype=dtype or next(iter(state.values())).dtype)
    load_tensors(model, convert_tirex_state(state, config), strict=True, source=str(weights_path))
    return save_pretrained(model, out, max_shard_size=max_shard_size)


def convert_hf(source: str, out: Path, *, dtype=None, max_shard_size="5GB") -> Path:
    """Re-save a transformers xLSTM directory (or cached hub repo) as a zoo directory."""
    directory = resolve_source(source if ":" in source else f"local-dir:{source}")
    return save_pretrained(load_model_dir(directory, dtype=dtype), out, max_shard_size=max_shard_size)


def convert_vil(weights_path: Path, out: Path, *, dtype=None, max_shard_size="5GB") -> Path:
    """A published Vision-LSTM file (training-side names) as a zoo directory; its config from the shapes."""
    state = read_vil(weights_path)
    config = infer_vil_config(state, str(weights_path))
    model = load_vil(config, state, source=str(weights_path), dtype=dtype)
    return save_pretrained(model, out, max_shard_size=max_shard_size)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xlstm-zoo convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", required=True, choices=("nx-ai", "tirex", "hf", "vil"))
    parser.add_argument("--config", type=Path, help="nx-ai: their xLSTMLMModelConfig as YAML")
    parser.add_argument("--weights", type=Path, help="nx-ai: their state_dict (.safetensors, .pt, .bin); "
                        "tirex: model.ckpt; vil: a vision-lstm torch-hub file (.th)")
    parser.add_argument("--model", help="hf: a transformers xLSTM directory or hf-hub:ORG/NAME (offline cache)")
    parser.add_argument("--out", type=Path, required=True, help="the zoo checkpoint directory to write")
    parser.add_argument("--dtype", choices=DTYPES, help="dtype of the written weights (default: as read)")
    parser.add_argument("--max-shard-size", default="5GB")
    args = parser.parse_args(argv)
    needed = {"nx-ai": ("config", "weights"), "tirex": ("weights",), "hf": ("model",), "vil": ("weights",)}[args.source]
    missing = [f"--{name}" for name in needed if getattr(args, name) is None]
    if missing:
        parser.error(f"--from {args.source} needs {' and '.join(missing)}")
    try:
        from ..factory import parse_dtype

        dtype = parse_dtype(args.dtype)
        if args.source == "nx-ai":
            out = convert_nxai(args.config, args.weights, args.out, dtype=dtype, max_shard_size=args.max_shard_size)
        elif args.source == "tirex":
            out = convert_tirex(args.weights, args.out, dtype=dtype, max_shard_size=args.max_shard_size)
        elif args.source == "vil":
            out = convert_vil(args.weights, args.out, dtype=dtype, max_shard_size=args.max_shard_size)
        else:
            out = convert_hf(args.model, args.out, dtype=dtype, max_shard_size=args.max_shard_size)
    except (CheckpointError, ConfigError, ValueError, OSError) as exc:
        print(f"xlstm-zoo convert: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} (load it with build_model('local-dir:{out}'))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
