"""Vision-LSTM (ViL): mLSTM blocks over an image's patch sequence, alternately from the top left and from the
bottom right. Parameter names are those of NX-AI/vision-lstm's VisionLSTM2 (after its torch-hub renaming),
so its checkpoints load by name once converted (registry/checkpoints/vil.py)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..schemas.vision import ViLConfig
from .layers import CausalConv1d, LinearHeadwiseExpand
from .mlstm import MLSTMCell
from .norms import LayerNorm


class ImageOutput(NamedTuple):
    logits: torch.Tensor
    """(B, num_classes) in float32."""
    features: torch.Tensor
    """(B, feature_dim): the pooled, normed features the head reads (e.g. for feature-space metrics)."""


class PatchEmbed(nn.Module):
    """Non-overlapping patches, each projected to `dim` by one strided convolution; (B, C, H, W) -> (B, h, w, dim)."""

    def __init__(self, channels: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch_size, stride=patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels).permute(0, 2, 3, 1)


class PosEmbed2d(nn.Module):
    """A learnable embedding per patch position, (1, h, w, dim), added to the patches."""

    def __init__(self, grid: tuple[int, int], dim: int):
        super().__init__()
        self.embed = nn.Parameter(torch.zeros(1, *grid, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embed


class GridConv(nn.Conv2d):
    """Depthwise 2-D convolution of a patch sequence (B, h*w, F) laid back out as its (h, w) grid; same shape out."""

    def __init__(self, features: int, kernel_size: int, grid: tuple[int, int]):
        super().__init__(features, features, kernel_size, padding=kernel_size // 2, groups=features)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x.transpose(1, 2).unflatten(2, self.grid))
        return y.flatten(2).transpose(1, 2)


class SequenceConv1d(CausalConv1d):
    """The causal1d variant: a causal depthwise convolution along the patch sequence (no state kept)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[0]


class DropPath(nn.Module):
    """Stochastic depth: in training, each sample's residual branch is dropped with probability `rate`
    (the kept ones scaled by 1 / (1 - rate))."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *(1,) * (x.dim() - 1)).bernoulli_(1 - self.rate)
        return x * keep / (1 - self.rate)


class ViLLayer(nn.Module):
    """proj_up -> (conv over the grid + SiLU -> q, k; pre-conv -> v) -> mLSTM cell -> + learnable skip
    -> * SiLU(z) -> proj_down. `flip` runs it on the reversed sequence (from the bottom right)."""

    def __init__(self, config: ViLConfig, flip: bool):
        super().__init__()
        dim, inner = config.dim, config.inner_dim
        blocks = inner // config.qkv_block_size
        self.flip = flip
        self.proj_up = nn.Linear(dim, 2 * inner, bias=config.proj_bias)
        self.q_proj = LinearHeadwiseExpand(inner, blocks, bias=config.proj_bias)
        self.k_proj = LinearHeadwiseExpand(inner, blocks, bias=config.proj_bias)
        self.v_proj = LinearHeadwiseExpand(inner, blocks, bias=config.proj_bias)
        if config.conv_kind == "2d":
            self.conv = GridConv(inner, config.conv_kernel_size, config.grid)
        else:
            self.conv = SequenceConv1d(inner, config.conv_kernel_size)
        self.mlstm_cell = MLSTMCell(inner, config.num_heads, config.kernels, norm_bias=config.norm_bias)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, dim, bias=config.proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = x.flip(1)
        x_m, z = self.proj_up(x).chunk(2, -1)
        x_c = F.silu(self.conv(x_m))
        h, _ = self.mlstm_cell(self.q_proj(x_c), self.k_proj(x_c), self.v_proj(x_m))
        y = self.proj_down((h + self.learnable_skip * x_c) * F.silu(z))
        return y.flip(1) if self.flip else y


class ViLBlock(nn.Module):
    """x + DropPath(layer(LayerNorm(x)))."""

    def __init__(self, config: ViLConfig, flip: bool, drop_path: float):
        super().__init__()
        self.norm = LayerNorm(config.dim, bias=config.norm_bias)
        self.layer = ViLLayer(config, flip)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.layer(self.norm(x)))


class ViLBlockPair(nn.Module):
    """One block per traversal direction: row-wise from the top left, then from the bottom right."""

    def __init__(self, config: ViLConfig, drop_path: float):
        super().__init__()
        self.rowwise_from_top_left = ViLBlock(config, flip=False, drop_path=drop_path)
        self.rowwise_from_bot_right = ViLBlock(config, flip=True, drop_path=drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rowwise_from_bot_right(self.rowwise_from_top_left(x))


class VisionLSTM(nn.Module):
    """Images (B, C, H, W) -> ImageOutput(logits (B, num_classes), pooled features)."""

    def __init__(self, config: ViLConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embed = PatchEmbed(config.image_shape[0], dim, config.patch_size)
        self.pos_embed = PosEmbed2d(config.grid, dim)
        self.blocks = nn.ModuleList(ViLBlockPair(config, rate) for rate in config.drop_path_rates())
        self.norm = LayerNorm(dim, eps=1e-6, bias=config.norm_bias)
        self.legacy_norm = nn.LayerNorm(config.feature_dim) if config.legacy_norm else nn.Identity()
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        expected = tuple(self.config.image_shape)
        if not pixels.is_floating_point():
            raise TypeError(f"vil: expected floating-point images, got {pixels.dtype}")
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected:
            raise ValueError(f"expected images of shape (batch, {', '.join(map(str, expected))}) "
                             f"(model.image_shape), got {tuple(pixels.shape)}")
        x = self.pos_embed(self.patch_embed(pixels)).flatten(1, 2)
        for pair in self.blocks:
            x = pair(x)
        x = self.norm(x)
        first, last = x[:, 0], x[:, -1]
        pooled = torch.cat([first, last], -1) if self.config.pooling == "bilateral_flatten" else (first + last) / 2
        return self.legacy_norm(pooled)

    def forward(self, pixels: torch.Tensor) -> ImageOutput:
        features = self.features(pixels)
        return ImageOutput(self.head(features).float(), features)
