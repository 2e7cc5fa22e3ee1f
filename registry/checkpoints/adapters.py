"""LoRA adapters through peft on our own modules: inject, save in peft's layout, load onto a base, merge.

peft swaps each target nn.Linear for its LoRA layer in place, so the model keeps its class, forward and
config; only the adapter's parameters train. Adapters live on the single (published) weight layout: a fused
xLSTM Large model is converted first (one LoRA per q, k, v, o rather than one shared by the stacked matrix),
and a merged model can be fused again for inference.

An adapter directory holds peft's `adapter_config.json` and `adapter_model.safetensors` (keys
`base_model.model.<module>.lora_A.weight`, as `PeftModel.save_pretrained` writes them) and `zoo_adapter.json`:
the base as a recipe's model reference (name, pretrained, overrides), the sha256 of the base's files when it is
a checkpoint directory (loading refuses a base that changed since) and the sha256 of both adapter files. It
is written last, so a crash mid-save leaves digests that do not match, never an adapter that loads half-new.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from ...schemas.recipe import LORA_TARGETS, LoRA, ModelRef
from ...xlstm import set_weight_mode
from ..factory import parse_dtype
from ..index import SOURCE_PREFIXES
from .store import ADAPTER_CONFIG_NAME as CONFIG_NAME
from .store import (CheckpointError, atomic_write, changed_files, iter_tensors, load_tensors, sha256_file,
                    source_digests, verify_sha256)

WEIGHTS_NAME = "adapter_model.safetensors"
BASE_NAME = "zoo_adapter.json"
PEFT_PREFIX = "base_model.model."  # PeftModel's attribute path to the wrapped model
ADAPTER = "default"  # peft's adapter name; its state dict keys leave it out


def _peft():
    try:
        import peft
    except ImportError as exc:
        raise ImportError("LoRA adapters need peft: pip install 'xlstm-zoo[finetune]'") from exc
    return peft


def target_modules(model: nn.Module, patterns: list[str] | None) -> list[str]:
    """Full names of the nn.Linear modules the patterns select (the family's default when None).

    A pattern matches a name or any of its dotted suffixes, so `mlstm_layer.q` and `*.q` both select every
    block's q. Every pattern must select at least one nn.Linear; all that do not are reported at once.
    """
    patterns = patterns or LORA_TARGETS[model.config.kind]
    modules = dict(model.named_modules())
    linears = [name for name, module in modules.items() if isinstance(module, nn.Linear)]
    selects = lambda name, p: fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, f"*.{p}")  # noqa: E731
    problems = []
    for p in patterns:
        if not any(selects(name, p) for name in linears):
            others = sorted({type(m).__name__ for name, m in modules.items() if name and selects(name, p)})
            what = f"only {', '.join(others)}" if others else "no module"
            problems.append(f"{p!r} selects {what}")
    if problems:
        examples = ", ".join(sorted({n.rpartition(".")[2] for n in linears}))
        raise ValueError(f"adapter.target_modules: every pattern must select an nn.Linear: {'; '.join(problems)} "
                         f"(the model's nn.Linear names end in: {examples})")
    return [name for name in linears if any(selects(name, p) for p in patterns)]


def apply(model: nn.Module, adapter: LoRA) -> nn.Module:
    """Inject fresh LoRA layers (B = 0: the model computes what the base does) and freeze everything else.

    The base is cast to `adapter.base_dtype` and put in the single weight layout first; the adapter's
    weights are float32 whatever the base's dtype.
    """
    peft = _peft()
    set_weight_mode(model, "single")
    model.to(parse_dtype(adapter.base_dtype))
    config = peft.LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                             target_modules=target_modules(model, adapter.target_modules))
    inject(model, config)
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
        if param.requires_grad:
            param.data = param.data.float()
    return model


def inject(model: nn.Module, config) -> nn.Module:
    """Put `model` in the single weight layout and add the LoRA layers a peft LoraConfig describes (B = 0)."""
    set_weight_mode(model, "single")
    _peft().inject_adapter_in_model(config, model)
    return model


def peft_config(model: nn.Module):
    """The LoraConfig of the adapter `model` carries, None without one."""
    return getattr(model, "peft_config", {}).get(ADAPTER)


def _peft_config(model: nn.Module):
    config = peft_config(model)
    if config is None:
        raise ValueError(f"{type(model).__name__} carries no LoRA adapter (see adapters.apply)")
    return config


def save(model: nn.Module, directory: Path, base: ModelRef, base_sha256: dict | None = None) -> Path:
    """Write the adapter of `model` (not its base) in peft's layout, naming the base it was trained on.
    base_sha256: the base's `base_digests` where known (a run records them when it starts), else read now."""
    peft = _peft()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if base.name.startswith("local-dir:"):
        base = base.model_copy(update={"name": f"local-dir:{Path(base.name[len('local-dir:'):]).resolve()}"})
    state = peft.get_peft_model_state_dict(model, adapter_name=ADAPTER)
    tensors = {PEFT_PREFIX + name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    config = _peft_config(model).to_dict()
    config.update(base_model_name_or_path=base.name, peft_type=str(config["peft_type"].value),
                  target_modules=sorted(config["target_modules"]))
    _write(directory / CONFIG_NAME, config)
    record = {"base": base.model_dump(mode="json"),
              "base_sha256": base_digests(base) if base_sha256 is None else base_sha256,
              "sha256": {name: sha256_file(directory / name) for name in (CONFIG_NAME, WEIGHTS_NAME)}}
    _write(directory / BASE_NAME, record)
    return directory


def base_digests(base: ModelRef) -> dict[str, str]:
    """What identifies a base's weights (`source_digests`) when it is a checkpoint directory; {} for a zoo
    entry (its weights are pinned by the entry's digests) or a fresh model."""
    return source_digests(base.name) if base.name.startswith(SOURCE_PREFIXES) else {}


def check_base(base: ModelRef, recorded: dict[str, str], what: str) -> None:
    """Refuse a base whose files are not those `recorded` (by base_digests) when `what` was made on it."""
    changes = changed_files(recorded, base_digests(base)) if recorded else []
    if changes:
        raise CheckpointError(f"{what} was made on {base.name}, whose weights have changed since: "
                              f"{'; '.join(changes)}")


def _write(path: Path, doc: dict) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True, default=sorted) + "\n"  # sorted: peft's set-valued fields
    atomic_write(path, lambda tmp: tmp.write_text(text))


def is_adapter_dir(directory: Path) -> bool:
    return (Path(directory) / CONFIG_NAME).is_file()


def _record(directory: Path) -> dict:
    path = directory / BASE_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: has {CONFIG_NAME} but no {BASE_NAME}: it does not name its base "
                              "(an adapter saved by xlstm-zoo train or adapters.save has both)")
    record = json.loads(path.read_text())
    for name, digest in record.get("sha256", {}).items():
        verify_sha256(directory / name, digest)
    return record


def read_base(directory: Path, overrides=None) -> tuple[ModelRef, list[str]]:
    """The base an adapter directory names, and the overrides to build it with: its own, then `overrides`
    (as `key=value` strings, JSON values being YAML)."""
    record = _record(Path(directory))
    base = ModelRef.model_validate(record["base"])
    check_base(base, record.get("base_sha256", {}), f"the adapter in {directory}")
    mine = [f"{key}={json.dumps(value)}" for key, value in base.overrides.items()]
    if isinstance(overrides, Mapping):
        overrides = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return base, mine + list(overrides or [])


def attach(model: nn.Module, directory: Path) -> nn.Module:
    """Inject the adapter saved in `directory` into its base `model` and load its weights (strictly)."""
    peft = _peft()
    directory = Path(directory)
    _record(directory)
    config = peft.LoraConfig.from_pretrained(str(directory))
    inject(model, config)
    names = {n for n, _ in model.named_parameters() if ".lora_" in n}
    tensors = ((_model_name(name), t.float()) for name, t in iter_tensors(directory / WEIGHTS_NAME))
    report = load_tensors(model, tensors, strict=False, source=str(directory / WEIGHTS_NAME))
    missing = sorted(names.intersection(report.missing))
    if report.unexpected or missing:
        report.missing = missing
        raise CheckpointError(f"{directory / WEIGHTS_NAME} does not fit the adapter of {config.base_model_name_or_path}"
                              f":\n{report.table()}")
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    return model.eval()


def _model_name(key: str) -> str:
    """`base_model.model.X.lora_A.weight` -> `X.lora_A.default.weight`, the parameter's name in the model."""
    key = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
    module, _, leaf = key.rpartition(".")
    return f"{module}.{ADAPTER}.{leaf}"


def merge(model: nn.Module, weight_mode: str | None = None) -> nn.Module:
    """Fold every adapter into its base weight (W + scale B A, in the base's dtype) and put the plain
    nn.Linear back; then convert to `weight_mode` (e.g. the base's "fused", for inference)."""
    peft = _peft()
    for name, module in list(model.named_modules()):
        if isinstance(module, peft.tuners.lora.LoraLayer):
            module.merge(safe_merge=True)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    for param in model.parameters():
        param.requires_grad_(True)
    return set_weight_mode(model, weight_mode) if weight_mode else model

