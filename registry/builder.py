"""build_model: from a zoo name, YAML file, config object or checkpoint directory to an nn.Module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from ..schemas.yaml_io import Overrides
from .checkpoints import adapters, load_model_dir, load_pretrained, resolve_source
from .checkpoints.vil import TORCH_HUB, load_torch_hub
from .factory import instantiate
from .index import SOURCE_PREFIXES, get_config, get_entry, looks_like_path, split_name
from .quantize import check_quantization, quantize_model

def _check_spec(spec: Any) -> None:
    """Refuse strings that look like a checkpoint location but lack the prefix that says which kind."""
    if not isinstance(spec, str) or spec.startswith(SOURCE_PREFIXES) or looks_like_path(spec):
        return
    if Path(spec).is_dir():
        raise ValueError(f"{spec!r} is a directory: to load a checkpoint directory use 'local-dir:{spec}'")
    if "/" in spec:
        raise ValueError(f"{spec!r} is not a zoo name: for a Hugging Face repo use 'hf-hub:{spec}', "
                         f"for a local directory 'local-dir:{spec}'")


def check_device(device: Union[str, torch.device, None]) -> None:
    """A device torch knows and this machine has: torch's own errors for a misspelt or absent one are a
    RuntimeError or, from deep inside CUDA's lazy init, an AssertionError."""
    if device is None:
        return
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected a torch device such as cpu, cuda, cuda:1 or meta, got {device!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            have = f"{count} CUDA device(s)" if count else f"no CUDA device (torch {torch.__version__}, CUDA " \
                f"{torch.version.cuda or 'not compiled in'})"
            raise ValueError(f"device {str(device)!r}: this machine has {have}")


def build_model(spec: Any, *, pretrained: Union[bool, str] = False, overrides: Overrides = None,
                device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None,
                quantize: Optional[str] = None, quantize_backend: str = "torchao") -> nn.Module:
    """Build a model.

    spec: a zoo name (`xlstm-125m`, or `name.tag` for a weights tag), a YAML file (an entry or a bare
    model config), a config object, `local-dir:PATH` or `hf-hub:ORG/NAME` (a checkpoint directory, or an
    adapter directory: its base with the adapter, unmerged; overrides then apply to the base).
    pretrained: load the entry's default weights (True) or those of a tag (a string), offline: from the
    Hugging Face cache, a local directory, or (Vision-LSTM) the torch hub cache.
    overrides: `{"model.num_blocks": 6}` or `["model.num_blocks=6"]`, validated like the file.
    device="meta" builds without allocating memory.
    quantize: "int8-weight-only" | "int4-weight-only" | "float8-weight-only" (xLSTM Large), applied last
    (registry/quantize.py), through quantize_backend "torchao" (the `quantize` extra; int4 on CUDA in
    bfloat16) or "zoo" (int8 / int4 with the zoo's Triton matvec kernels in decode steps, any device).
    """
    _check_spec(spec)
    check_device(device)
    if quantize is not None:
        check_quantization(quantize, quantize_backend)
    if isinstance(spec, str) and spec.startswith(SOURCE_PREFIXES):
        directory = resolve_source(spec)
        if adapters.is_adapter_dir(directory):
            base, overrides = adapters.read_base(directory, overrides)
            model = adapters.attach(build_model(base.name, pretrained=base.pretrained, overrides=overrides,
                                                device=device, dtype=dtype), directory)
        else:
            model = load_model_dir(directory, device=device, dtype=dtype, overrides=overrides)
    else:
        config = get_config(spec, overrides)
        if pretrained:
            if not isinstance(spec, str) or looks_like_path(spec):
                raise ValueError("pretrained=... needs a zoo name; for a checkpoint directory use 'local-dir:PATH'")
            weights = get_entry(spec).weights_for(pretrained if isinstance(pretrained, str) else split_name(spec)[1])
            load = load_torch_hub if weights.source.startswith(TORCH_HUB) else load_pretrained
            model = load(config, weights, device=device, dtype=dtype)
        else:
            model = instantiate(config, device=device, dtype=dtype)
    return model if quantize is None else quantize_model(model, quantize, quantize_backend)


def build_for_eval(spec: Any, *, device=None, dtype: Optional[torch.dtype] = None) -> tuple[nn.Module, Optional[Path]]:
    """The model a spec names, in eval mode, and the directory its weights came from (where a tokenizer.json
    may be). A zoo name with weights loads them; one without is evaluated as initialised (said on stderr);
    a built module is taken as it is."""
    if isinstance(spec, nn.Module):
        return spec.eval(), None
    directory = None
    if isinstance(spec, str) and spec.startswith(SOURCE_PREFIXES):
        directory = resolve_source(spec)
        model = build_model(spec, device=device, dtype=dtype)
    elif isinstance(spec, str) and not looks_like_path(spec) and get_entry(spec).weights:
        weights = get_entry(spec).weights_for(split_name(spec)[1])
        if weights.source.startswith(SOURCE_PREFIXES):  # a directory (torch-hub weights are one file)
            directory = resolve_source(weights.source, revision=weights.revision)
        model = build_model(spec, pretrained=True, device=device, dtype=dtype)
    else:
        print(f"xlstm-zoo: {spec} has no weights: evaluating its random initialisation", file=sys.stderr)
        model = build_model(spec, device=device, dtype=dtype)
    return model.eval(), directory
