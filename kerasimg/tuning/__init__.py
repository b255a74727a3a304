"""Compound-scaling search over EfficientNet's alpha, beta, gamma with KerasTuner."""

from kerasimg.tuning.space import CompoundSpace, Triple, read_space_file

__all__ = ["CompoundSpace", "Triple", "read_space_file"]
