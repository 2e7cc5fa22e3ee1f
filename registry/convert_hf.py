"""transformers' xLSTM `config.json` <-> our xLSTM Large config.

Our parameter names are transformers' own, so only the config needs mapping. The mapping is explicit
both ways: every transformers key is either mapped, or listed as not affecting the weights or the
math (generation defaults, bookkeeping); any other key is an error rather than silently dropped.
"""

from __future__ import annotations

from typing import Any

from ..schemas.models import XLSTMLargeLMConfig

MODEL_TYPE = "xlstm"
NEURIPS_MODEL_TYPE = "xlstm_zoo-xlstm-lm"
"""config.json of our NeurIPS models: transformers has no such model; zoo.yaml is what we read back."""

MODEL_FIELDS = ("vocab_size", "num_heads", "use_bias", "norm_eps", "norm_reduction_force_float32",
                "add_out_norm", "qk_dim_factor", "v_dim_factor", "ffn_proj_factor",
                "ffn_round_up_to_multiple_of", "weight_mode", "tie_word_embeddings")
KERNEL_FIELDS = ("chunkwise_kernel", "sequence_kernel", "step_kernel", "mode", "chunk_size", "eps",
                 "autocast_kernel_dtype", "inference_state_dtype")
SOFT_CAPS = ("gate_soft_cap", "output_logit_soft_cap")
IGNORED = {
    # generation / runtime switches of transformers, not part of the model
    "return_last_states", "use_cache", "max_inference_chunksize", "bos_token_id", "eos_token_id",
    "pad_token_id",
    # bookkeeping written by PreTrainedConfig.save_pretrained
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "_name_or_path",
    "output_hidden_states", "output_attentions", "return_dict", "is_encoder_decoder", "id2label", "label2id",
    "problem_type", "tokenizer_class", "chunk_size_feed_forward", "_attn_implementation_autoset",
}

# Kernel names transformers' own (pure PyTorch) xLSTM accepts, by our canonical kernel name.
_HF_CHUNKWISE = {"parallel--native": "parallel--native_autograd"}


class ConfigMappingError(ValueError):
    """A config that cannot be mapped without losing or changing something; names the key."""


def _alias(config: dict, names: tuple[str, str], source: str) -> Any:
    values = {config[n] for n in names if config.get(n) is not None}
    if len(values) > 1:
        raise ConfigMappingError(f"{source}: {names[0]} and {names[1]} disagree ({sorted(values)})")
    if not values:
        raise ConfigMappingError(f"{source}: expected {names[0]} (or {names[1]})")
    return values.pop()


def from_hf_config(config: dict, *, source: str = "config.json") -> XLSTMLargeLMConfig:
    """Our config from a transformers xLSTM config.json (or a zoo-written NeurIPS one, via zoo.yaml only)."""
    model_type = config.get("model_type")
    if model_type != MODEL_TYPE:
        raise ConfigMappingError(f"{source}: expected model_type {MODEL_TYPE!r} (transformers' xLSTM), "
                                 f"got {model_type!r}")
    known = {*MODEL_FIELDS, *KERNEL_FIELDS, *SOFT_CAPS, *IGNORED,
             "hidden_size", "embedding_dim", "num_hidden_layers", "num_blocks"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigMappingError(f"{source}: keys not understood: {', '.join(unknown)}")
    fields = {name: config[name] for name in MODEL_FIELDS if name in config}
    fields["embedding_dim"] = _alias(config, ("hidden_size", "embedding_dim"), source)
    fields["num_blocks"] = _alias(config, ("num_hidden_layers", "num_blocks"), source)
    for name in SOFT_CAPS:  # transformers and xlstm-jax treat a cap <= 0 or null as none
        if name in config:
            cap = config[name]
            fields[name] = cap if cap is not None and cap > 0 else None
    # transformers' defaults where the key is absent (its class defaults are the 7B's)
    fields.setdefault("ffn_proj_factor", 2.667)
    fields["kernels"] = {name: config[name] for name in KERNEL_FIELDS if name in config}
    fields["kernels"].setdefault("mode", "inference")
    return XLSTMLargeLMConfig(**fields)


def to_hf_config(config) -> dict:
    """A config.json for `config`: transformers' xLSTM for xLSTM Large, our own record for NeurIPS models.

    transformers' model runs arbitrary lengths and generates only in its `inference` mode with the
    native kernels, so those are written whatever our model uses (the zoo.yaml beside keeps ours).
    """
    if config.kind != "xlstm-large-lm":
        return {"model_type": NEURIPS_MODEL_TYPE, "architectures": ["XLSTMLMModel"],
                **config.model_dump(mode="json")}
    kernels = config.kernels
    return {
        "model_type": MODEL_TYPE,
        "architectures": ["xLSTMForCausalLM"],
        **{name: getattr(config, name) for name in MODEL_FIELDS},
        "hidden_size": config.embedding_dim,
        "embedding_dim": config.embedding_dim,
        "num_hidden_layers": config.num_blocks,
        "num_blocks": config.num_blocks,
        **{name: getattr(config, name) for name in SOFT_CAPS},  # null (no cap) has no transformers equivalent
        "chunkwise_kernel": _HF_CHUNKWISE.get(kernels.chunkwise_kernel, "chunkwise--native_autograd"),
        "sequence_kernel": "native_sequence__native",
        "step_kernel": "native",
        "mode": "inference",
        "return_last_states": True,
        "chunk_size": kernels.chunk_size,
        "eps": kernels.eps,
        "autocast_kernel_dtype": kernels.autocast_kernel_dtype,
        "inference_state_dtype": kernels.inference_state_dtype,
    }
