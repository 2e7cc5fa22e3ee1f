"""Training, evaluation and reproduction of zoo entries from their recipes (the CLI's train/eval/reproduce)."""

from .cli import eval_main, reproduce_main, train_main

__all__ = ["eval_main", "reproduce_main", "train_main"]
