"""nn.Modules of both xLSTM families, their states, init and optimizer groups."""

from .init import apply_init
from .large import XLSTMLargeLM, set_weight_mode
from .neurips import XLSTMLM
from .optim import param_groups
from .sequence import MLSTM, SLSTM, BackboneOutput, SequenceState, XLSTMBackbone
from .tirex import TiRex
from .state import LayerState, LMOutput, LMState, MLSTMState, SLSTMState
from .vision import ImageOutput, VisionLSTM

MODEL_CLASSES = {"xlstm-lm": XLSTMLM, "xlstm-large-lm": XLSTMLargeLM, "vil": VisionLSTM, "xlstm-backbone": XLSTMBackbone,
                 "tirex": TiRex}

__all__ = [
    "MLSTM", "MODEL_CLASSES", "SLSTM", "BackboneOutput", "ImageOutput", "LMOutput", "LMState", "LayerState",
    "MLSTMState", "SLSTMState", "SequenceState", "TiRex", "VisionLSTM", "XLSTMBackbone", "XLSTMLM", "XLSTMLargeLM",
    "apply_init", "param_groups", "set_weight_mode",
]
