"""Pydantic schemas of every component and document (torch-free)."""

from .blocks import (
    GatedFFNConfig, MLSTMBlockConfig, MLSTMCellConfig, MLSTMLayerConfig, SLSTMBlockConfig, SLSTMCellConfig,
    SLSTMLayerConfig, XLSTMBlockStackConfig, XLSTMLargeBlockConfig,
)
from .entry import Result, WeightsSpec, ZooEntry
from .errors import ConfigError, Problem
from .init import InitConfig, InitRule
from .kernels import KernelConfig
from .models import ModelConfig, XLSTMLargeLMConfig, XLSTMLMConfig
from .weight_decay import DecayRule, WeightDecayConfig

__all__ = [
    "ConfigError", "DecayRule", "GatedFFNConfig", "InitConfig", "InitRule", "KernelConfig", "MLSTMBlockConfig",
    "MLSTMCellConfig", "MLSTMLayerConfig", "ModelConfig", "Problem", "Result", "SLSTMBlockConfig", "SLSTMCellConfig",
    "SLSTMLayerConfig", "WeightDecayConfig", "WeightsSpec", "XLSTMBlockStackConfig", "XLSTMLMConfig", "XLSTMLargeBlockConfig",
    "XLSTMLargeLMConfig", "ZooEntry",
]
