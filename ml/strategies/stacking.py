"""Stacked models (the thesis's "model of models"): average the exposures the member models propose.

Timing: each member's exposure for the close of t uses data known at that close, so their mean does too.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["extra_leverage", "model_of_models"]


def model_of_models(exposures: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[n]`` mean of the members' ``[n]`` exposures (equal weights, as the thesis)."""
    if not exposures:
        raise ValueError("model_of_models needs at least one member")
    arrays = [np.asarray(x, dtype=float).reshape(-1) for x in exposures.values()]
    if len({x.size for x in arrays}) != 1:
        raise ValueError("members' exposures differ in length")
    return np.mean(np.stack(arrays), axis=0)


def extra_leverage(exposure: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """The thesis's "E.L." variant: ``factor`` × the exposure (2× by default; shorts scale too)."""
    return float(factor) * np.asarray(exposure, dtype=float)
