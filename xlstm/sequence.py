"""xLSTM over continuous inputs: the `xlstm-backbone` model and the nn.LSTM-style MLSTM / SLSTM built on it.

A direction is the LMs' block stack (either family, same blocks and kernels) after a shared input
projection; a bidirectional model runs a second stack over the flipped sequence and merges its flipped-back
output with the forward one, so its backward half is exactly that stack run on the reversed input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import nn

from ..schemas.blocks import GatedFFNConfig, MLSTMBlockConfig, MLSTMLayerConfig, SLSTMBlockConfig, SLSTMLayerConfig
from ..schemas.kernels import KernelConfig
from ..schemas.sequence import (BidirectionalConfig, LargeStackConfig, NeurIPSStackConfig, StackConfig,
                                XLSTMBackboneConfig)
from .init import apply_init
from .large import XLSTMLargeBlock
from .neurips import XLSTMBlockStack
from .norms import RMSNorm
from .state import LMState, State, run_blocks


@dataclass
class SequenceState(State):
    """The forward stack's per-block state and, when bidirectional, the backward stack's (which has read
    the sequence from its end to its start). Pass it back to continue the forward direction."""

    forward: LMState
    backward: Optional[LMState] = None


class BackboneOutput(NamedTuple):
    output: torch.Tensor
    """The head's output (features when there is no head): classification (B, C), regression (B, O) or
    (B, S, O) with pooling none, quantile-forecast (B, Q, horizon)."""
    features: torch.Tensor
    """(B, S, feature_dim): per-position features, both directions merged."""
    state: SequenceState


class XLSTMLargeBlockStack(nn.Module):
    """xLSTM Large blocks and the final RMSNorm, without the LM's embedding."""

    def __init__(self, config: LargeStackConfig, kernels: KernelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(XLSTMLargeBlock(config, kernels) for _ in range(config.num_blocks))
        self.out_norm = RMSNorm(config.embedding_dim, config.norm_eps, config.norm_reduction_force_float32,
                                config.use_bias) if config.add_out_norm else nn.Identity()

    def forward(self, x: torch.Tensor, state: Optional[LMState] = None):
        x, state = run_blocks(self.blocks, x, state)
        return self.out_norm(x), state


def make_stack(config: StackConfig, kernels: KernelConfig) -> nn.Module:
    if config.kind == "xlstm-large-stack":
        return XLSTMLargeBlockStack(config, kernels)
    return XLSTMBlockStack(config, kernels)


class BidirectionalStack(nn.Module):
    """`forward` over x; with `backward`, that stack over x flipped in time, flipped back; merged."""

    def __init__(self, config: StackConfig, kernels: KernelConfig, bidirectional: Optional[BidirectionalConfig]):
        super().__init__()
        self.forward_stack = make_stack(config, kernels)
        self.backward_stack = make_stack(config, kernels) if bidirectional else None
        self.merge_mode = bidirectional.merge if bidirectional else None

    def merge(self, fwd: torch.Tensor, bwd: Optional[torch.Tensor]) -> torch.Tensor:
        if bwd is None:
            return fwd
        return torch.cat([fwd, bwd], -1) if self.merge_mode == "concat" else fwd + bwd

    def directions(self, x: torch.Tensor, state: Optional[SequenceState] = None):
        """Per-direction outputs, both in the input's time order, and the new state."""
        fwd, fwd_state = self.forward_stack(x, None if state is None else state.forward)
        if self.backward_stack is None:
            return fwd, None, SequenceState(fwd_state)
        bwd, bwd_state = self.backward_stack(x.flip(1), None if state is None else state.backward)
        return fwd, bwd.flip(1), SequenceState(fwd_state, bwd_state)

    def forward(self, x: torch.Tensor, state: Optional[SequenceState] = None):
        fwd, bwd, state = self.directions(x, state)
        return self.merge(fwd, bwd), state


class Head(nn.Module):
    """Pooling of the features, then a linear map to the head's outputs."""

    def __init__(self, config, features: int):
        super().__init__()
        self.config = config
        kind = config.kind
        out = {"classification": lambda: config.num_classes, "regression": lambda: config.output_size,
               "quantile-forecast": lambda: len(config.quantiles) * config.horizon}[kind]()
        self.dropout = nn.Dropout(getattr(config, "dropout", 0.0))
        self.proj = nn.Linear(features, out)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.dropout(pooled))
        if self.config.kind == "quantile-forecast":
            y = y.unflatten(-1, (len(self.config.quantiles), self.config.horizon))
        return y


class XLSTMBackbone(nn.Module):
    """input_proj -> (bidirectional) block stack -> head; `forward(x (B, S, input_size), state)` -> BackboneOutput."""

    def __init__(self, config: XLSTMBackboneConfig):
        super().__init__()
        self.config = config
        self.input_proj = nn.Linear(config.input_size, config.embedding_dim, bias=config.input_bias)
        self.stack = BidirectionalStack(config.stack, config.kernels, config.bidirectional)
        self.head = Head(config.head, config.feature_dim) if config.head is not None else None

    def pool(self, fwd: torch.Tensor, bwd: Optional[torch.Tensor], features: torch.Tensor, pooling: str):
        if pooling == "none":
            return features
        if pooling == "last":  # each direction's final step: the backward stack ends at position 0
            return self.stack.merge(fwd[:, -1], None if bwd is None else bwd[:, 0])
        return features.mean(1) if pooling == "mean" else features.amax(1)

    def check(self, x: torch.Tensor, state: Optional[SequenceState]) -> None:
        """Input and state as forward takes them, refused before the blocks (whose errors are torch's own)."""
        weight = self.input_proj.weight
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"xlstm-backbone: expected a torch.Tensor input, got {type(x).__name__}")
        if not x.is_floating_point() or x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"xlstm-backbone: expected a floating-point input of the model's dtype {weight.dtype}, "
                            f"got {x.dtype}")
        if x.dim() != 3 or x.shape[-1] != self.config.input_size or x.shape[1] == 0:
            raise ValueError(f"xlstm-backbone: expected input (batch, length, {self.config.input_size}) with at least "
                             f"one step, got {tuple(x.shape)}")
        if x.device != weight.device:
            raise ValueError(f"xlstm-backbone: expected an input on the model's device {weight.device}, got {x.device}")
        if state is None:
            return
        if not isinstance(state, SequenceState):
            raise TypeError(f"state: expected None or the SequenceState a previous call returned, got "
                            f"{type(state).__name__}")
        bidirectional = self.stack.backward_stack is not None
        if (state.backward is not None) != bidirectional:
            raise ValueError(f"state: expected the state of a {'bi' if bidirectional else 'uni'}directional model, got "
                             f"one of a {'uni' if bidirectional else 'bi'}directional one")
        blocks = self.config.stack.num_blocks
        for name, part in (("forward", state.forward), ("backward", state.backward)):
            if part is None:
                continue
            if not isinstance(part, LMState) or len(part.blocks) != blocks:
                got = len(part.blocks) if isinstance(part, LMState) else type(part).__name__
                raise ValueError(f"state.{name}: expected the state of {blocks} blocks, got {got}: a state from "
                                 "another model?")
            for j, block in enumerate(part.blocks):
                for t in block.tensors():
                    if t.shape[0] != x.shape[0]:
                        raise ValueError(f"state.{name}.blocks[{j}]: expected batch size {x.shape[0]} (that of the "
                                         f"input), got {t.shape[0]}")

    def forward(self, x: torch.Tensor, state: Optional[SequenceState] = None) -> BackboneOutput:
        self.check(x, state)
        fwd, bwd, state = self.stack.directions(self.input_proj(x), state)
        features = self.stack.merge(fwd, bwd)
        if self.head is None:
            return BackboneOutput(features, features, state)
        pooled = self.pool(fwd, bwd, features, self.config.head.pooling)
        return BackboneOutput(self.head(pooled), features, state)


class _RecurrentModule(nn.Module):
    """torch.nn.LSTM's calling convention over an xlstm-backbone without head.

    `forward(x, state=None) -> (output, state)`: x (L, N, input_size), (N, L, input_size) with batch_first,
    or unbatched (L, input_size); output (L, N, D * hidden_size) (D = 2 if bidirectional and merge concat,
    else 1), laid out like x. The state is a SequenceState (per-block recurrent states), not nn.LSTM's
    (h_n, c_n): pass it back to continue a sequence; a run split in pieces equals the whole run.
    """

    def __init__(self, config: XLSTMBackboneConfig, batch_first: bool = False):
        super().__init__()
        if config.head is not None:
            raise ValueError(f"{type(self).__name__}: expected a backbone config without head, got head.kind "
                             f"{config.head.kind!r}")
        self.config = config
        self.batch_first = batch_first
        self.backbone = XLSTMBackbone(config)
        apply_init(self.backbone, config.init_rules(), config)

    @classmethod
    def from_config(cls, config: XLSTMBackboneConfig | dict, batch_first: bool = False):
        """The module a whole xlstm-backbone config (without head) describes, instead of nn.LSTM's arguments."""
        module = cls.__new__(cls)
        _RecurrentModule.__init__(module, XLSTMBackboneConfig.model_validate(config), batch_first)
        return module

    def forward(self, x: torch.Tensor, state: Optional[SequenceState] = None):
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, _, state = self.backbone(x, state)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return (out.squeeze(0 if self.batch_first else 1) if unbatched else out), state


def _config(input_size, hidden_size, num_layers, bias, dropout, bidirectional, merge, kernels, **stack):
    return XLSTMBackboneConfig(
        input_size=input_size, input_bias=bias,
        stack=NeurIPSStackConfig(embedding_dim=hidden_size, num_blocks=num_layers, bias=bias, dropout=dropout, **stack),
        bidirectional=BidirectionalConfig(merge=merge) if bidirectional else None,
        kernels=kernels if kernels is not None else KernelConfig())


class MLSTM(_RecurrentModule):
    """A drop-in for torch.nn.LSTM made of NeurIPS mLSTM blocks (one per layer), any length, stateful.

        rnn = MLSTM(input_size=8, hidden_size=64, num_layers=2, batch_first=True, bidirectional=True)
        out, state = rnn(x)                    # (N, L, 128)

    Further options set the mLSTM layer (proj_factor, conv1d_kernel_size, qkv_proj_blocksize) and the
    kernels (a KernelConfig); `MLSTM.from_config` takes a whole xlstm-backbone config instead.
    `dropout` is the blocks' dropout (every block, the last included).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, num_heads: int = 4,
                 *, proj_factor: float = 2.0, conv1d_kernel_size: int = 4, qkv_proj_blocksize: int = 4,
                 merge: str = "concat", kernels: Optional[KernelConfig] = None):
        layer = MLSTMLayerConfig(num_heads=num_heads, proj_factor=proj_factor, conv1d_kernel_size=conv1d_kernel_size,
                                 qkv_proj_blocksize=qkv_proj_blocksize)
        config = _config(input_size, hidden_size, num_layers, bias, dropout, bidirectional, merge, kernels,
                         mlstm_block=MLSTMBlockConfig(mlstm=layer))
        super().__init__(config, batch_first)


class SLSTM(_RecurrentModule):
    """A drop-in for torch.nn.LSTM made of NeurIPS sLSTM blocks (sLSTM layer + gated FFN per layer).

        rnn = SLSTM(input_size=8, hidden_size=64, num_layers=2)
        out, state = rnn(x)                    # (L, N, 64)

    Further options: conv1d_kernel_size (0: none), ffn_proj_factor (None: no feed-forward), bias_init,
    kernels; `SLSTM.from_config` takes a whole xlstm-backbone config.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, num_heads: int = 4,
                 *, conv1d_kernel_size: int = 4, ffn_proj_factor: Optional[float] = 1.3,
                 bias_init: str = "powerlaw_blockdependent", merge: str = "concat",
                 kernels: Optional[KernelConfig] = None):
        layer = SLSTMLayerConfig(num_heads=num_heads, conv1d_kernel_size=conv1d_kernel_size, bias_init=bias_init)
        ffn = None if ffn_proj_factor is None else GatedFFNConfig(proj_factor=ffn_proj_factor)
        config = _config(input_size, hidden_size, num_layers, bias, dropout, bidirectional, merge, kernels,
                         slstm_block=SLSTMBlockConfig(slstm=layer, feedforward=ffn), slstm_at="all")
        super().__init__(config, batch_first)
