"""nn.Modules of both xLSTM families, their states, init and optimizer groups."""

from .init import apply_init
from .large import XLSTMLargeLM, set_weight_mode
from .neurips import XLSTMLM
from .optim import param_groups
from .state import LayerState, LMOutput, LMState, MLSTMState, SLSTMState
from .vision import ImageOutput, VisionLSTM

MODEL_CLASSES = {"xlstm-lm": XLSTMLM, "xlstm-large-lm": XLSTMLargeLM, "vil": VisionLSTM}

__all__ = [
    "MODEL_CLASSES", "ImageOutput", "LMOutput", "LMState", "LayerState", "MLSTMState", "SLSTMState", "VisionLSTM",
    "XLSTMLM", "XLSTMLargeLM",
    "apply_init", "param_groups", "set_weight_mode",
]
