"""Training and evaluation data for recipes: every task yields deterministic `Batch`es from seeds alone.

A training batch is a pure function of (seed, step), so resuming needs only the step and every process of a
distributed run can cut its share out of the same global batch.
"""

from __future__ import annotations

from ...schemas.recipe import DataConfig
from .batch import IGNORE, Batch, Task
from .digits import DigitsPixelsTask, DigitsTask
from .formal import FormalLanguageTask
from .instructions import InstructionTask
from .mqar import MQARTask
from .series import SeriesTask
from .text import TextTask

TASKS = {"formal-language": FormalLanguageTask, "mqar": MQARTask, "text": TextTask, "digits": DigitsTask,
         "digits-pixels": DigitsPixelsTask, "instructions": InstructionTask, "series": SeriesTask}


def make_task(data: DataConfig) -> Task:
    """The task a recipe's `data` section describes (file paths absolute or relative to the working directory)."""
    return TASKS[data.kind](data)


__all__ = ["IGNORE", "Batch", "Task", "make_task"]
