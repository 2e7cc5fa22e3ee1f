"""xLSTM Large, the 7B architecture. Module names are those of transformers' xLSTMForCausalLM, so its
checkpoints (e.g. NX-AI/xLSTM-7b) load without renaming."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import triton_available
from ..schemas.blocks import XLSTMLargeBlockConfig
from ..schemas.kernels import KernelConfig
from ..schemas.models import XLSTMLargeLMConfig
from .backend import MLSTMBackend
from .layers import Embedding
from .norms import HeadwiseLayerNorm, RMSNorm
from .quantized import WeightOnlyLinear
from .generation import GenerationMixin
from .arguments import check_forward
from .state import LMOutput, LMState, MLSTMState, lm_forward, run_blocks


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

    def fusions(self) -> dict:
        """Fused module name -> (the single-mode modules it stacks, their output sizes)."""
        return {"qkv_opreact": (("q", "k", "v", "ogate_preact"), self.split),
                "ifgate_preact": (("igate_preact", "fgate_preact"), [self.num_heads] * 2)}

    def projections(self, x: torch.Tensor, gates: bool = True):
        """q, k, v, o (B, S, .) and (gates=True) the gate pre-activations i, f (B, S, NH), before the soft-cap."""
        if self.fused:
            q, k, v, o = self.qkv_opreact(x).split(self.split, -1)
        else:
            q, k, v, o = self.q(x), self.k(x), self.v(x), self.ogate_preact(x)
        if not gates:
            return q, k, v, o
        i, f = self.ifgate_preact(x).chunk(2, -1) if self.fused else (self.igate_preact(x), self.fgate_preact(x))
        return q, k, v, o, i, f

    def gate_weights(self) -> tuple:
        """(w_i, b_i, w_f, b_f) of the input and forget gate projections, in either weight mode."""
        if self.fused:
            (w_i, w_f), (b_i, b_f) = self.ifgate_preact.weight.chunk(2), self.ifgate_preact.bias.chunk(2)
            return w_i, b_i, w_f, b_f
        return self.igate_preact.weight, self.igate_preact.bias, self.fgate_preact.weight, self.fgate_preact.bias

    def heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, S, NH * DH) -> (B, NH, S, DH), a view."""
        return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def inputs(self, x: torch.Tensor):
        """Kernel inputs from the normed x: q, k, v (B, NH, S, DH), i, f (B, NH, S), and the output gate o."""
        q, k, v, o, i, f = self.projections(x)
        gate = lambda g: soft_cap(g, self.gate_soft_cap).transpose(1, 2)  # noqa: E731
        return self.heads(q), self.heads(k), self.heads(v), gate(i), gate(f), o

    def output(self, h: torch.Tensor, o: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Per-head norm of the kernel's h (cast to the layer input's dtype), output gate, out_proj."""
        return self.out_proj(self.multihead_norm(h.transpose(1, 2).to(dtype)) * torch.sigmoid(o))

    def forward(self, x: torch.Tensor, state: Optional[MLSTMState] = None):
        q, k, v, i, f, o = self.inputs(x)
        h, state = self.backend(q, k, v, i, f, state)
        return self.output(h, o, x.dtype), state


class SwiGLU(nn.Module):
    """proj_down(SiLU(proj_up_gate x) * proj_up x); fused: both up projections as one matrix."""

    def __init__(self, D: int, F_: int, bias: bool = False, fused: bool = False):
        super().__init__()
        self.fused = fused
        if self.fused:
            self.proj_up_gate_z = nn.Linear(D, 2 * F_, bias=bias)
        else:
            self.proj_up_gate = nn.Linear(D, F_, bias=bias)
            self.proj_up = nn.Linear(D, F_, bias=bias)
        self.proj_down = nn.Linear(F_, D, bias=bias)
        self.ffn_dim = F_

    def fusions(self) -> dict:
        return {"proj_up_gate_z": (("proj_up_gate", "proj_up"), [self.ffn_dim] * 2)}

    def gate_up(self, x: torch.Tensor):
        return self.proj_up_gate_z(x).chunk(2, -1) if self.fused else (self.proj_up_gate(x), self.proj_up(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x)
        return self.proj_down(F.silu(gate) * up)


class XLSTMLargeBlock(nn.Module):
    def __init__(self, config: XLSTMLargeBlockConfig, kernels: KernelConfig):
        super().__init__()
        norm = lambda: RMSNorm(config.embedding_dim, config.norm_eps, config.norm_reduction_force_float32,  # noqa: E731
                               config.use_bias)
        self.norm_mlstm = norm()
        self.mlstm_layer = MLSTMLayerLarge(config, kernels)
        self.norm_ffn = norm()
        self.ffn = SwiGLU(config.embedding_dim, config.ffn_dim, config.use_bias, config.weight_mode == "fused")
        self.pointwise = kernels.pointwise_kernel
        self.fusable = not config.use_bias and config.norm_reduction_force_float32
        if self.pointwise == "triton" and not self.fusable:
            raise ValueError("kernels.pointwise_kernel=triton: the fused kernels cover blocks without biases and "
                             "with float32 norm reductions (use_bias: false, norm_reduction_force_float32: true)")

    def runs_fused(self, x: torch.Tensor) -> bool:
        """Fused pointwise kernels: only without autograd or autocast (they have no backward)."""
        if self.pointwise == "native" or torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
            return False
        return self.pointwise == "triton" or (self.fusable and x.is_cuda and triton_available())

    def forward(self, x: torch.Tensor, state: Optional[MLSTMState] = None):
        if self.runs_fused(x):
            return _block_fused(self, x, state)
        h, state = self.mlstm_layer(self.norm_mlstm(x), state)
        x = x + h
        return x + self.ffn(self.norm_ffn(x)), state


def _block_fused(block: XLSTMLargeBlock, x: torch.Tensor, state: Optional[MLSTMState]):
    """The block with its pointwise work in fused Triton kernels: 7 launches besides the projections, 6 in
    a decode step (whose gate projection the step kernel does), 5 with the zoo's quantized projections."""
    from ..kernels.triton import fused

    layer, norm, ffn = block.mlstm_layer, block.norm_mlstm, block.ffn
    xn = fused.rms_norm(x, norm.weight, norm.eps)
    if x.shape[1] == 1 and state is not None and layer.backend.projects_gates(x):  # a decode step
        q, k, v, o = layer.projections(xn, gates=False)
        h, state = layer.backend.step_projecting_gates(layer.heads(q), layer.heads(k), layer.heads(v), xn,
                                                       layer.gate_weights(), layer.gate_soft_cap, state)
    else:
        q, k, v, o, i, f = layer.projections(xn)
        i, f = fused.soft_cap_gates(i, f, layer.gate_soft_cap)
        h, state = layer.backend(layer.heads(q), layer.heads(k), layer.heads(v), i, f, state)
    y = fused.headwise_norm_gate(h, o, layer.multihead_norm.weight, layer.multihead_norm.eps)
    xn, x = fused.rms_norm(layer.out_proj(y), block.norm_ffn.weight, block.norm_ffn.eps, residual=x)
    h = fused.swiglu(*ffn.gate_up(xn))
    if isinstance(ffn.proj_down, WeightOnlyLinear):  # its kernel adds the residual: one launch less
        return ffn.proj_down(h, residual=x), state
    return x + ffn.proj_down(h), state


# ----------------------------------------------------------------------------------------- weight modes


def _linear(weight: torch.Tensor, bias: Optional[torch.Tensor]) -> nn.Linear:
    """An nn.Linear around existing tensors (no initialisation, no copy)."""
    with torch.device("meta"):
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear.weight = nn.Parameter(weight)
    if bias is not None:
        linear.bias = nn.Parameter(bias)
    return linear


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat of the rows; on meta only the shape (meta's cat imports torch._dynamo: a second)."""
    first = tensors[0]
    if first.is_meta:
        return torch.empty(sum(t.shape[0] for t in tensors), *first.shape[1:], dtype=first.dtype, device="meta")
    return torch.cat(tensors)


def _fuse(module: nn.Module, into: str, parts: tuple) -> None:
    linears = [getattr(module, p) for p in parts]
    bias = None if linears[0].bias is None else _stack([m.bias.data for m in linears])
    merged = _linear(_stack([m.weight.data for m in linears]), bias)
    for p in parts:
        delattr(module, p)
    setattr(module, into, merged)


def _unfuse(module: nn.Module, into: str, parts: tuple, sizes: list) -> None:
    merged = getattr(module, into)
    delattr(module, into)
    biases = [None] * len(parts) if merged.bias is None else merged.bias.data.split(sizes)
    for p, w, b in zip(parts, merged.weight.data.split(sizes), biases):
        setattr(module, p, _linear(w.clone(), None if b is None else b.clone()))


def single_layout_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """model.state_dict() with every fused projection split into its single-mode names (views, no copy):
    the published layout, which checkpoints hold whatever mode the model runs in."""
    state = model.state_dict()
    for prefix, module in model.named_modules():
        if isinstance(module, (MLSTMLayerLarge, SwiGLU)) and module.fused:
            for into, (parts, sizes) in module.fusions().items():
                for leaf in ("weight", "bias"):
                    stacked = state.pop(f"{prefix}.{into}.{leaf}", None)
                    if stacked is not None:
                        state.update({f"{prefix}.{p}.{leaf}": t for p, t in zip(parts, stacked.split(sizes))})
    return state


def set_weight_mode(model: nn.Module, mode: str) -> nn.Module:
    """Convert every xLSTM Large block to weight mode `mode` ("single" | "fused") in place: same math.

    Fused runs q/k/v/o, the two gates and the two FFN up projections as one matrix each: fewer, larger
    products (7B decode on an H100: 5.2 instead of 6.0 ms of matrix time per token, benchmarks/results).
    Single is the layout of the published checkpoints. One block's projections are copied at a time.
    """
    fused = mode == "fused"
    for module in list(model.modules()):
        if isinstance(module, (MLSTMLayerLarge, SwiGLU)) and module.fused != fused:
            for into, (parts, sizes) in module.fusions().items():
                _fuse(module, into, parts) if fused else _unfuse(module, into, parts, sizes)
            module.fused = fused
    if isinstance(getattr(model, "config", None), XLSTMLargeLMConfig):
        model.config = model.config.model_copy(update={"weight_mode": mode})
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
        one: the lm_head and the float32 soft-capped logits of the others are skipped); 0: all. Without
        autograd, inputs longer than kernels.max_inference_chunksize run in pieces (state.lm_forward)."""
        check_forward(self, input_ids, state, logits_to_keep)
        return lm_forward(self.backbone, lambda x: soft_cap(self.lm_head(x).float(), self.config.output_logit_soft_cap),
                          input_ids, state, logits_to_keep, self.config.kernels.max_inference_chunksize)
