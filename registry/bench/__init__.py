"""GPU benchmarks: `xlstm-zoo bench kernels|generate|prefill|train` (cli.py)."""
