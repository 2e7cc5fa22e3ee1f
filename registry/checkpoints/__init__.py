"""Checkpoint directories (store.py) and the foreign layouts they convert from: transformers (hf.py), NX-AI (nxai.py).

convert.py is the `xlstm-zoo convert` verb. Nothing here builds a model from a name: that is the builder's.
"""

from .store import (CheckpointError, iter_tensors, load_checkpoint, load_model_dir, load_pretrained, load_tensors,
                    resolve_source, save_pretrained, save_tokenizer)

__all__ = ["CheckpointError", "iter_tensors", "load_checkpoint", "load_model_dir", "load_pretrained", "load_tensors",
           "resolve_source", "save_pretrained", "save_tokenizer"]
