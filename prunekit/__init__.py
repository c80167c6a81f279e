"""prunekit: hardware-aware, sharpness-aware structured pruning for PyTorch vision models."""

__version__ = "0.1.0"
