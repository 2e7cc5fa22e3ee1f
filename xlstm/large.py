"""xLSTM Large, the 7B architecture. Module names are those of transformers' xLSTMForCausalLM, so its
checkpoints (e.g. NX-AI/xLSTM-7b) load without renaming."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..schemas.blocks import XLSTMLargeBlockConfig
from ..schemas.kernels import KernelConfig
from ..schemas.models import XLSTMLargeLMConfig
from .backend import SHORT_SEQUENCE, MLSTMBackend
from .layers import Embedding
from .norms import HeadwiseLayerNorm, RMSNorm
from .generation import GenerationMixin
from .state import LMOutput, LMState, MLSTMState, run_blocks


def soft_cap(x: torch.Tensor, cap: Optional[float]) -> torch.Tensor:
    return x if cap is None else cap * torch.tanh(x / cap)


class MLSTMLayerLarge(nn.Module):
    """q, k, v, output gate and scalar per-head i/f gates from the normed input; per-head norm; out_proj."""

    def __init__(self, config: XLSTMLargeBlockConfig, kernels: KernelConfig):
        super().__init__()
        D, NH, bias = config.embedding_dim, config.num_heads, config.use_bias
        self.num_heads = NH
        self.gate_soft_cap = config.gate_soft_cap
        self.split = [config.qk_dim, config.qk_dim, config.v_dim, config.v_dim]
        self.fused = config.weight_mode == "fused"
        if self.fused:
            self.qkv_opreact = nn.Linear(D, sum(self.split), bias=bias)
            self.ifgate_preact = nn.Linear(D, 2 * NH, bias=True)
        else:
            self.q = nn.Linear(D, config.qk_dim, bias=bias)
            self.k = nn.Linear(D, config.qk_dim, bias=bias)
            self.v = nn.Linear(D, config.v_dim, bias=bias)
            self.ogate_preact = nn.Linear(D, config.v_dim, bias=bias)
            self.igate_preact = nn.Linear(D, NH, bias=True)
            self.fgate_preact = nn.Linear(D, NH, bias=True)
        self.multihead_norm = HeadwiseLayerNorm(config.v_dim, config.norm_eps, config.norm_reduction_force_float32, bias)
        self.out_proj = nn.Linear(config.v_dim, D, bias=bias)
        self.backend = MLSTMBackend(kernels)

    def projections(self, x: torch.Tensor):
        if self.fused:
            q, k, v, o = self.qkv_opreact(x).split(self.split, -1)
            i, f = self.ifgate_preact(x).chunk(2, -1)
        else:
            q, k, v, o = self.q(x), self.k(x), self.v(x), self.ogate_preact(x)
            i, f = self.igate_preact(x), self.fgate_preact(x)
        return q, k, v, o, soft_cap(i, self.gate_soft_cap), soft_cap(f, self.gate_soft_cap)

    def inputs(self, x: torch.Tensor):
        """Kernel inputs from the normed x: q, k, v (B, NH, S, DH), i, f (B, NH, S), and the output gate o."""
        q, k, v, o, i, f = self.projections(x)
        heads = lambda t: t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # noqa: E731
        return heads(q), heads(k), heads(v), i.transpose(1, 2), f.transpose(1, 2), o

    def output(self, h: torch.Tensor, o: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Per-head norm of the kernel's h (cast to the layer input's dtype), output gate, out_proj."""
        return self.out_proj(self.multihead_norm(h.transpose(1, 2).to(dtype)) * torch.sigmoid(o))

    def forward(self, x: torch.Tensor, state: Optional[MLSTMState] = None):
        q, k, v, i, f, o = self.inputs(x)
        h, state = self.backend(q, k, v, i, f, state)
        return self.output(h, o, x.dtype), state


class SwiGLU(nn.Module):
    def __init__(self, config: XLSTMLargeBlockConfig):
        super().__init__()
        D, F_, bias = config.embedding_dim, config.ffn_dim, config.use_bias
        self.fused = config.weight_mode == "fused"
        if self.fused:
            self.proj_up_gate_z = nn.Linear(D, 2 * F_, bias=bias)
        else:
            self.proj_up_gate = nn.Linear(D, F_, bias=bias)
            self.proj_up = nn.Linear(D, F_, bias=bias)
        self.proj_down = nn.Linear(F_, D, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.proj_up_gate_z(x).chunk(2, -1) if self.fused else (self.proj_up_gate(x), self.proj_up(x))
        return self.proj_down(F.silu(gate) * up)


class XLSTMLargeBlock(nn.Module):
    def __init__(self, config: XLSTMLargeBlockConfig, kernels: KernelConfig):
        super().__init__()
        norm = lambda: RMSNorm(config.embedding_dim, config.norm_eps, config.norm_reduction_force_float32,  # noqa: E731
                               config.use_bias)
        self.norm_mlstm = norm()
        self.mlstm_layer = MLSTMLayerLarge(config, kernels)
        self.norm_ffn = norm()
        self.ffn = SwiGLU(config)
        self.compiled: Optional[str] = None  # torch.compile backend of the prefill regions (compile_blocks)

    def forward(self, x: torch.Tensor, state: Optional[MLSTMState] = None):
        regions = _COMPILED.get(self.compiled) if self.compiled and x.shape[1] >= SHORT_SEQUENCE else None
        before, after = regions or (_block_before_kernel, _block_after_kernel)
        q, k, v, i, f, o, dtype = before(self, x)
        h, state = self.mlstm_layer.backend(q, k, v, i, f, state)
        return after(self, x, h, o, dtype), state


# The blocks' work around the mLSTM kernel, as functions of (block, tensors), so that one torch.compile of
# each serves all blocks (parameters are graph inputs) and the Triton kernel stays outside the graphs.
def _block_before_kernel(block: XLSTMLargeBlock, x: torch.Tensor):
    xn = block.norm_mlstm(x)
    q, k, v, i, f, o = block.mlstm_layer.inputs(xn)
    # (B, NH, S, DH) laid out as the kernel reads them: compiled, this copy is one fused pass per tensor
    return q.contiguous(), k.contiguous(), v.contiguous(), i, f, o, xn.dtype


def _block_after_kernel(block: XLSTMLargeBlock, x: torch.Tensor, h: torch.Tensor, o: torch.Tensor, dtype):
    x = x + block.mlstm_layer.output(h, o, dtype)
    return x + block.ffn(block.norm_ffn(x))


_COMPILED: dict = {}  # torch.compile backend -> (before, after), built on first use


def compile_blocks(model: nn.Module, backend: Optional[str] = "inductor") -> nn.Module:
    """Opt-in: the norms, projections' epilogues, gates, SwiGLU and residuals of every xLSTM Large block
    run as torch.compile'd regions (fused elementwise kernels) for sequences of >= SHORT_SEQUENCE tokens
    (prefill); single tokens and short prompts stay eager. `backend=None` turns it off again. Returns model."""
    if backend is not None and backend not in _COMPILED:
        _COMPILED[backend] = (torch.compile(_block_before_kernel, backend=backend),
                              torch.compile(_block_after_kernel, backend=backend))
    for block in model.modules():
        if isinstance(block, XLSTMLargeBlock):
            block.compiled = backend
    return model


class XLSTMLargeBackbone(nn.Module):
    def __init__(self, config: XLSTMLargeLMConfig):
        super().__init__()
        self.embeddings = Embedding(config.vocab_size, config.embedding_dim)
        self.blocks = nn.ModuleList(XLSTMLargeBlock(config, config.kernels) for _ in range(config.num_blocks))
        self.out_norm = RMSNorm(config.embedding_dim, config.norm_eps, config.norm_reduction_force_float32,
                                config.use_bias) if config.add_out_norm else nn.Identity()

    def forward(self, input_ids: torch.Tensor, state: Optional[LMState] = None):
        x, state = run_blocks(self.blocks, self.embeddings(input_ids), state)
        return self.out_norm(x), state


class XLSTMLargeLM(GenerationMixin, nn.Module):
    """backbone -> lm_head -> soft-capped float32 logits; `forward(ids, state)` -> LMOutput."""

    def __init__(self, config: XLSTMLargeLMConfig):
        super().__init__()
        self.config = config
        self.backbone = XLSTMLargeBackbone(config)
        self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    def forward(self, input_ids: torch.Tensor, state: Optional[LMState] = None, logits_to_keep: int = 0) -> LMOutput:
        """`logits_to_keep` > 0: logits of the last that many positions only (generation's prefill needs
        one: the lm_head and the float32 soft-capped logits of the others are skipped); 0: all."""
        x, state = self.backbone(input_ids, state)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        return LMOutput(soft_cap(self.lm_head(x).float(), self.config.output_logit_soft_cap), state)
