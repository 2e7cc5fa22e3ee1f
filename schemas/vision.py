"""Vision-LSTM (ViL, arXiv 2406.04303): an image classifier made of mLSTM block pairs over the patch sequence."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import MAX_BLOCKS, MAX_FACTOR, MAX_KERNEL, MAX_VOCAB, MAX_WIDTH, Schema
from .errors import FieldErrors
from .init import BiasLinspace, InitConfig, InitRule, Normal, Ones, SmallInit, TorchDefault, TruncNormal, WangInit
from .init import XavierUniform, Zeros, rule
from .kernels import KernelConfig
from .weight_decay import DecayRule, WeightDecayConfig

# NX-AI/vision-lstm's reset_parameters, written out as rules (the last matching rule wins). Norm weights
# are offsets (scale 1 + w) except legacy_norm's, a plain nn.LayerNorm.
VIL_RULES = [
    rule("*.bias", Zeros()),
    rule("*norm.weight", Zeros()),
    rule("legacy_norm.weight", Ones()),
    rule("patch_embed.proj.weight", XavierUniform()),
    rule("pos_embed.embed", TruncNormal(std=0.02)),
    rule("*.layer.proj_up.weight", SmallInit()),
    rule("*.layer.[qkv]_proj.weight", SmallInit()),
    rule("*.layer.proj_down.weight", WangInit(num_blocks=1)),
    rule("*.layer.learnable_skip", Ones()),
    rule("*.layer.conv.*", TorchDefault()),
    rule("*.mlstm_cell.[if]gate.weight", Zeros()),
    rule("*.mlstm_cell.fgate.bias", BiasLinspace(start=3.0, end=6.0)),
    rule("*.mlstm_cell.igate.bias", Normal(std=0.1)),
    rule("head.weight", TruncNormal(std=2e-5)),
]


class ViLConfig(Schema):
    """VisionLSTM2 of NX-AI/vision-lstm: patch embedding, learnable 2-D position embedding, `depth` block pairs
    (top-left -> bottom-right, then the flipped sequence), norm, bilateral pooling, optional legacy norm, head."""

    kind: Literal["vil"] = "vil"
    dim: int = Field(ge=1, le=MAX_WIDTH)
    depth: int = Field(ge=1, le=MAX_BLOCKS)
    """Block pairs (each pair: one block per traversal direction), so ViL-T/S/B have depth 12."""
    patch_size: int = Field(16, ge=1, le=MAX_WIDTH)
    image_shape: tuple[int, int, int] = (3, 224, 224)
    """(channels, height, width); the patch size must divide height and width."""
    num_classes: int = Field(1000, ge=1, le=MAX_VOCAB)
    pooling: Literal["bilateral_flatten", "bilateral_avg"] = "bilateral_flatten"
    """bilateral_flatten concatenates the first and last patch token (head input 2 x dim); bilateral_avg
    averages them."""
    legacy_norm: bool = False
    """A LayerNorm after pooling, as the published v2 checkpoints were trained with."""
    expansion: int = Field(2, ge=1, le=MAX_FACTOR)
    """Inner width of the mLSTM layer = expansion x dim."""
    qkv_block_size: int = Field(4, ge=1, le=MAX_WIDTH)
    """q/k/v are block-diagonal with blocks of this size."""
    num_heads: int = Field(4, ge=1, le=MAX_WIDTH)
    conv_kind: Literal["2d", "causal1d"] = "2d"
    """2d: depthwise convolution over the patch grid; causal1d: over the patch sequence."""
    conv_kernel_size: int = Field(3, ge=1, le=MAX_KERNEL)
    proj_bias: bool = True
    norm_bias: bool = True
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    drop_path_decay: bool = False
    """Rates rising linearly from 0 to drop_path_rate over the block pairs instead of one rate for all."""
    kernels: KernelConfig = KernelConfig()
    init: InitConfig = InitConfig()
    weight_decay: WeightDecayConfig = WeightDecayConfig()

    @model_validator(mode="after")
    def _check(self) -> "ViLConfig":
        errors = FieldErrors()
        channels, height, width = self.image_shape
        if min(self.image_shape) < 1 or max(self.image_shape) > MAX_WIDTH:
            errors.add(("image_shape",), f"expected (channels, height, width) in [1, {MAX_WIDTH}], got {list(self.image_shape)}")
        elif height % self.patch_size or width % self.patch_size:
            errors.add(("patch_size",), f"expected a divisor of the image height {height} and width {width}, "
                       f"got {self.patch_size}")
        inner = self.inner_dim
        if inner % self.qkv_block_size:
            errors.add(("qkv_block_size",), f"expected a divisor of the inner width expansion x dim = {inner}, "
                       f"got {self.qkv_block_size}")
        if inner % self.num_heads:
            errors.add(("num_heads",), f"expected a divisor of the inner width expansion x dim = {inner}, "
                       f"got {self.num_heads}")
        if self.conv_kind == "2d" and self.conv_kernel_size % 2 == 0:
            errors.add(("conv_kernel_size",), f"expected an odd size for conv_kind 2d (the grid keeps its shape), "
                       f"got {self.conv_kernel_size}")
        if self.init.preset not in ("reference", "torch_default"):
            errors.add(("init", "preset"),
                       f"expected 'reference' or 'torch_default' for a vil, got {self.init.preset!r}")
        errors.raise_if_any()
        return self

    @property
    def inner_dim(self) -> int:
        return self.expansion * self.dim

    @property
    def embedding_dim(self) -> int:
        """The width small_init / wang_init scale by (the reference uses dim, not the inner width)."""
        return self.dim

    @property
    def grid(self) -> tuple[int, int]:
        """Patches per column and per row."""
        return self.image_shape[1] // self.patch_size, self.image_shape[2] // self.patch_size

    @property
    def feature_dim(self) -> int:
        """Width of the pooled features the head reads."""
        return 2 * self.dim if self.pooling == "bilateral_flatten" else self.dim

    def drop_path_rates(self) -> list[float]:
        if self.drop_path_decay and self.depth > 1:
            return [self.drop_path_rate * j / (self.depth - 1) for j in range(self.depth)]
        return [self.drop_path_rate] * self.depth

    def init_rules(self) -> list[InitRule]:
        return [*(VIL_RULES if self.init.preset == "reference" else []), *self.init.rules]

    def decay_rules(self) -> list[DecayRule]:
        """reference: every weight matrix and kernel, never norms, biases or the position embedding."""
        preset = {"none": []}.get(self.weight_decay.preset, [
            DecayRule(params="*.weight", decay=True), DecayRule(params="*norm*", decay=False),
            DecayRule(params="pos_embed.embed", decay=False)])
        return [*preset, *self.weight_decay.rules]
