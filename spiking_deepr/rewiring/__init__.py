"""Rewiring optimizers: DEEP R (hard budget), its Adam variant, soft-DEEP R and baselines."""
from .deepr import DeepR, DeepRAdam
from .pruning import MagnitudePruning
from .soft import SoftDeepR, soft_deepr_theta_min

__all__ = ["DeepR", "DeepRAdam", "MagnitudePruning", "SoftDeepR", "soft_deepr_theta_min"]
