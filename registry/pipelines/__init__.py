"""Training, evaluation and reproduction of zoo entries from their recipes (the CLI's train/eval/reproduce),
and merging a LoRA run's adapter into its base (merge)."""

from .cli import eval_main, merge_main, reproduce_main, train_main

__all__ = ["eval_main", "merge_main", "reproduce_main", "train_main"]
