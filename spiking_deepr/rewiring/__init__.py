"""Rewiring optimizers: DEEP R (hard budget), its Adam variant, SET, RigL, soft-DEEP R and pruning."""
from .deepr import DeepR, DeepRAdam
from .pruning import MagnitudePruning
from .rigl import RigL
from .set import SET
from .soft import SoftDeepR, soft_deepr_theta_min

__all__ = ["DeepR", "DeepRAdam", "MagnitudePruning", "RigL", "SET", "SoftDeepR", "soft_deepr_theta_min"]
