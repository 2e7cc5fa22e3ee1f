"""The NeurIPS xLSTM language model: any mix of mLSTM and sLSTM blocks (module names follow NX-AI)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..schemas.blocks import MLSTMBlockConfig, SLSTMBlockConfig, XLSTMBlockStackConfig
from ..schemas.kernels import KernelConfig
from ..schemas.models import XLSTMLMConfig
from .layers import Embedding, GatedFeedForward
from .mlstm import MLSTMLayer
from .norms import LayerNorm
from .slstm import SLSTMLayer
from .generation import GenerationMixin
from .arguments import check_forward
from .state import LMOutput, LMState, lm_forward, run_blocks


class XLSTMBlock(nn.Module):
    """Pre-norm residual block: x + layer(norm(x)), then optionally x + ffn(norm(x))."""

    def __init__(self, block: MLSTMBlockConfig | SLSTMBlockConfig, config: XLSTMBlockStackConfig, kernels: KernelConfig):
        super().__init__()
        D = config.embedding_dim
        self.xlstm_norm = LayerNorm(D, eps=config.norm_eps)
        if block.kind == "mlstm-block":
            self.xlstm = MLSTMLayer(block.mlstm, D, kernels, config.bias, config.dropout, config.norm_eps)
        else:
            self.xlstm = SLSTMLayer(block.slstm, D, kernels, config.dropout, config.norm_eps)
        ffn = block.feedforward
        if ffn is not None:
            self.ffn_norm = LayerNorm(D, eps=config.norm_eps)
            # As in NX-AI, the stack's bias and dropout do not reach the FFN (its own defaults: none).
            self.ffn = GatedFeedForward(D, ffn.proj_up_dim(D), ffn.act_fn, ffn.bias, ffn.dropout)
        else:
            self.ffn = None

    def forward(self, x: torch.Tensor, state=None):
        y, state = self.xlstm(self.xlstm_norm(x), state)
        x = x + y
        if self.ffn is not None:
            x = x + self.ffn(self.ffn_norm(x))
        return x, state


class XLSTMBlockStack(nn.Module):
    def __init__(self, config: XLSTMBlockStackConfig, kernels: KernelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(XLSTMBlock(b, config, kernels) for b in config.block_configs())
        self.post_blocks_norm = LayerNorm(config.embedding_dim, eps=config.norm_eps) if config.add_post_blocks_norm \
            else nn.Identity()

    def forward(self, x: torch.Tensor, state: Optional[LMState] = None):
        x, state = run_blocks(self.blocks, x, state)
        return self.post_blocks_norm(x), state


class XLSTMLM(GenerationMixin, nn.Module):
    """token_embedding -> (dropout) -> block stack -> lm_head; `forward(ids, state)` -> LMOutput."""

    def __init__(self, config: XLSTMLMConfig):
        super().__init__()
        self.config = config
        self.token_embedding = Embedding(config.vocab_size, config.embedding_dim)
        self.emb_dropout = nn.Dropout(config.dropout) if config.add_embedding_dropout else nn.Identity()
        self.xlstm_block_stack = XLSTMBlockStack(config, config.kernels)
        self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.token_embedding.weight

    def forward(self, input_ids: torch.Tensor, state: Optional[LMState] = None, logits_to_keep: int = 0) -> LMOutput:
        """`logits_to_keep` > 0: logits of the last that many positions only (generation's prefill); 0: all.
        Without autograd, inputs longer than kernels.max_inference_chunksize run in pieces (state.lm_forward)."""
        check_forward(self, input_ids, state, logits_to_keep)
        hidden = lambda ids, state: self.xlstm_block_stack(self.emb_dropout(self.token_embedding(ids)), state)  # noqa: E731
        return lm_forward(hidden, lambda x: self.lm_head(x).float(), input_ids, state, logits_to_keep,
                          self.config.kernels.max_inference_chunksize)
