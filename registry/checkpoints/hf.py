"""transformers' xLSTM `config.json` <-> our xLSTM Large config.

Our parameter names are transformers' own, so only the config needs mapping. The mapping is explicit
both ways: every transformers key is either mapped, or listed as not affecting the weights or the
math (generation defaults, bookkeeping); any other key is an error rather than silently dropped.
"""

from __future__ import annotations

from typing import Any

import torch

from ...schemas.errors import ConfigError
from ...schemas.models import XLSTMLargeLMConfig
from ...schemas.yaml_io import Document, validate_document

MODEL_TYPE = "xlstm"
ZOO_MODEL_TYPE = "xlstm_zoo"
"""config.json of models transformers cannot run as they are (NeurIPS ones, ...); we read zoo.yaml."""

MODEL_FIELDS = ("vocab_size", "num_heads", "use_bias", "norm_eps", "norm_reduction_force_float32",
                "qk_dim_factor", "v_dim_factor", "ffn_proj_factor", "ffn_round_up_to_multiple_of", "weight_mode")
# transformers' modeling code (5.x) ignores these two: it always applies an out_norm (without bias) and
# never ties lm_head to the embedding, so its checkpoints hold both tensors.
IGNORED_BY_TRANSFORMERS = ("add_out_norm", "tie_word_embeddings")
KERNEL_FIELDS = ("chunkwise_kernel", "sequence_kernel", "step_kernel", "mode", "chunk_size", "eps",
                 "autocast_kernel_dtype", "inference_state_dtype", "max_inference_chunksize")
SOFT_CAPS = ("gate_soft_cap", "output_logit_soft_cap")
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")
IGNORED = {
    # generation / runtime switches of transformers, not part of the model
    "return_last_states", "use_cache",
    # bookkeeping written by PreTrainedConfig.save_pretrained
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "_name_or_path",
    "output_hidden_states", "output_attentions", "return_dict", "is_encoder_decoder", "id2label", "label2id",
    "problem_type", "tokenizer_class", "chunk_size_feed_forward", "_attn_implementation_autoset",
}

# transformers' class defaults (the 7B's) where ours differ, for keys a config.json leaves out.
HF_DEFAULTS = {"vocab_size": 50304, "hidden_size": 4096, "num_hidden_layers": 32, "ffn_proj_factor": 2.667}

# Kernel names transformers' own (pure PyTorch) xLSTM accepts, by our canonical kernel name.
_HF_CHUNKWISE = {"parallel--native": "parallel--native_autograd"}


class ConfigMappingError(ValueError):
    """A config that cannot be mapped without losing or changing something; names the key."""


def _alias(config: dict, names: tuple[str, str], source: str) -> Any:
    values = [config[n] for n in names if config.get(n) is not None]
    if any(v != values[0] for v in values):
        raise ConfigMappingError(f"{source}: {names[0]} and {names[1]} disagree ({values})")
    return values[0] if values else HF_DEFAULTS[names[0]]


def from_hf_config(config: dict, *, source: str = "config.json") -> XLSTMLargeLMConfig:
    """Our config from a transformers xLSTM config.json."""
    model_type = config.get("model_type")
    if model_type == ZOO_MODEL_TYPE:
        raise ConfigMappingError(f"{source}: model_type {ZOO_MODEL_TYPE!r} is our own record of a model transformers "
                                 "cannot run; its config is zoo.yaml, missing beside it")
    if model_type != MODEL_TYPE:
        raise ConfigMappingError(f"{source}: expected model_type {MODEL_TYPE!r} (transformers' xLSTM), "
                                 f"got {model_type!r}")
    known = {*MODEL_FIELDS, *KERNEL_FIELDS, *SOFT_CAPS, *TOKEN_IDS, *IGNORED, *IGNORED_BY_TRANSFORMERS,
             "hidden_size", "embedding_dim", "num_hidden_layers", "num_blocks"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigMappingError(f"{source}: keys not understood: {', '.join(unknown)}")
    fields = {name: config.get(name, HF_DEFAULTS.get(name)) for name in MODEL_FIELDS
              if name in config or name in HF_DEFAULTS}
    fields.update({name: config[name] for name in TOKEN_IDS if config.get(name) is not None})
    fields.update(add_out_norm=True, tie_word_embeddings=False)  # what transformers computes
    fields["embedding_dim"] = _alias(config, ("hidden_size", "embedding_dim"), source)
    fields["num_blocks"] = _alias(config, ("num_hidden_layers", "num_blocks"), source)
    for name in SOFT_CAPS:  # null is no cap in transformers; xlstm-jax reads a cap <= 0 the same way
        if name in config:
            cap = config[name]
            fields[name] = None if cap is None or isinstance(cap, (int, float)) and cap <= 0 else cap
    fields["kernels"] = {name: config[name] for name in KERNEL_FIELDS if name in config}
    fields["kernels"].setdefault("mode", "inference")
    try:
        return validate_document(XLSTMLargeLMConfig, Document(fields, source))
    except ConfigError as exc:  # named by the config.json keys the values came from
        keys = {"embedding_dim": next((n for n in ("hidden_size", "embedding_dim") if n in config), "hidden_size"),
                "num_blocks": next((n for n in ("num_hidden_layers", "num_blocks") if n in config),
                                   "num_hidden_layers")}
        raise ConfigMappingError("\n".join(
            f"{source}: {keys.get(p.path, p.path.removeprefix('kernels.'))}: {p.message}" for p in exc.problems)) from None


def transformers_fill(config: XLSTMLargeLMConfig) -> dict[str, torch.Tensor]:
    """Tensors our model has and transformers' checkpoints lack, as the identity they are there."""
    return {"backbone.out_norm.bias": torch.zeros(config.embedding_dim)} if config.use_bias else {}


def transformers_incompatibilities(model) -> list[str]:
    """Why transformers' xLSTM would compute something else than `model` (empty: it computes the same)."""
    config = model.config
    if config.kind != "xlstm-large-lm":
        return [f"transformers has no model of kind {config.kind} (only xLSTM Large, kind xlstm-large-lm)"]
    reasons = [f"{name}: null (no cap) has no transformers equivalent" for name in SOFT_CAPS
               if getattr(config, name) is None]
    if not config.add_out_norm:
        reasons.append("add_out_norm: false, but transformers always applies the out_norm")
    if config.use_bias and config.add_out_norm and model.backbone.out_norm.bias.any():
        reasons.append("backbone.out_norm.bias is not zero, but transformers' out_norm has no bias")
    return reasons


def to_hf_config(model) -> dict:
    """config.json for `model`: transformers' xLSTM config when transformers computes the same function,
    else our own record (a model_type transformers refuses) with the reasons.

    transformers' model runs arbitrary lengths and generates only in its `inference` mode with the
    native kernels, so those are written whatever our model uses (the zoo.yaml beside keeps ours).
    """
    config = model.config
    reasons = transformers_incompatibilities(model)
    if reasons:
        return {"model_type": ZOO_MODEL_TYPE, "transformers_incompatible": reasons, **config.model_dump(mode="json")}
    kernels = config.kernels
    return {
        "model_type": MODEL_TYPE,
        "architectures": ["xLSTMForCausalLM"],
        **{name: getattr(config, name) for name in (*MODEL_FIELDS, *IGNORED_BY_TRANSFORMERS, *SOFT_CAPS)},
        "weight_mode": "single",  # the layout checkpoints hold (fused is a way to run, converted at load)
        **{name: getattr(config, name) for name in TOKEN_IDS if getattr(config, name) is not None},
        "hidden_size": config.embedding_dim,
        "embedding_dim": config.embedding_dim,
        "num_hidden_layers": config.num_blocks,
        "num_blocks": config.num_blocks,
        "chunkwise_kernel": _HF_CHUNKWISE.get(kernels.chunkwise_kernel, "chunkwise--native_autograd"),
        "sequence_kernel": "native_sequence__native",
        "step_kernel": "native",
        "mode": "inference",
        "return_last_states": True,
        "chunk_size": kernels.chunk_size,
        "eps": kernels.eps,
        "autocast_kernel_dtype": kernels.autocast_kernel_dtype,
        "inference_state_dtype": kernels.inference_state_dtype,
        "max_inference_chunksize": kernels.max_inference_chunksize,
    }
