"""Sharpness-aware pruning methods: AdaSAP, C-SAM and S2AP building blocks.

Each module is independent of how masks or perturbations reach a network: they work on tensors
and callables, and the pipeline wires them to a model.
"""
