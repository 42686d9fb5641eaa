"""The VIX regime switcher (thesis): while the trailing VIX moving average is above a threshold, any
strategy takes the default action instead of its own (50 % in the asset, the rest cash).

Timing: the mean of the VIX over the ``window`` rows ending at t (the VIX of t is known at the decision
close, lagged per the feature config) switches the decision of t. The thesis does not publish the window
or the threshold; :func:`choose_switch` picks them on a training window only (the switcher's effect on
holding the asset there), and returns the whole grid as the sensitivity table.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ml.metrics import sharpe

__all__ = ["SwitchConfig", "apply_switch", "choose_switch", "switch_mask", "trailing_mean"]

WINDOWS: tuple[int, ...] = (5, 10, 20, 50)
THRESHOLDS: tuple[float, ...] = (20.0, 25.0, 30.0, 35.0)


class SwitchConfig(BaseModel):
    """A switcher: VIX moving-average ``window`` (rows), ``threshold`` (index points), ``default`` exposure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(default=10, ge=1)
    threshold: float = Field(default=25.0, gt=0.0)
    default: float = 0.5


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """``[T]`` mean of ``x`` over the ``window`` rows ending at t (fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=float))])
    rows = np.arange(c.size - 1)
    lo = np.maximum(rows + 1 - int(window), 0)
    return (c[rows + 1] - c[lo]) / (rows + 1 - lo)


def switch_mask(vix: np.ndarray, config: SwitchConfig) -> np.ndarray:
    """``[T]`` bool: the switcher is on at row t (trailing VIX mean above the threshold)."""
    return trailing_mean(vix, config.window) > config.threshold


def apply_switch(proposal: np.ndarray, mask: np.ndarray, default: np.ndarray | float) -> np.ndarray:
    """The proposal where the switch is off and ``default`` where it is on. ``proposal``: ``[n]`` exposures
    or ``[n, A+1]`` weights (then ``default`` is an ``[A+1]`` weight vector)."""
    p = np.asarray(proposal, dtype=float)
    m = np.asarray(mask, dtype=bool).reshape(-1)
    if m.size != p.shape[0]:
        raise ValueError(f"mask has {m.size} rows, the proposal {p.shape[0]}")
    d = np.broadcast_to(np.asarray(default, dtype=float), p.shape[1:])
    return np.where(m.reshape((-1,) + (1,) * (p.ndim - 1)), d, p)


def choose_switch(vix: np.ndarray, next_log_returns: np.ndarray, windows: Sequence[int] = WINDOWS,
                  thresholds: Sequence[float] = THRESHOLDS, default: float = 0.5,
                  ) -> tuple[SwitchConfig, pl.DataFrame]:
    """Grid search on a TRAINING window: for each (window, threshold), the Sharpe of holding the asset with
    the switcher (exposure ``default`` while on, 1 otherwise; ``next_log_returns[t]`` is the asset's log
    return earned by the decision of row t). Returns the best config (ties: the smaller window, then the
    lower threshold) and the grid: ``window, threshold, share_on, sharpe_train``."""
    v = np.asarray(vix, dtype=float)
    r = np.asarray(next_log_returns, dtype=float)
    ok = np.isfinite(r)
    rows = []
    for w in windows:
        for th in thresholds:
            cfg = SwitchConfig(window=w, threshold=th, default=default)
            m = switch_mask(v, cfg)
            rows.append({"window": int(w), "threshold": float(th), "share_on": float(m[ok].mean()),
                         "sharpe_train": sharpe(np.where(m, default, 1.0)[ok] * r[ok])})
    grid = pl.DataFrame(rows)
    best = grid.with_row_index("i").sort(["sharpe_train", "window", "threshold"], descending=[True, False, False],
                                         nulls_last=True).row(0, named=True)
    return SwitchConfig(window=best["window"], threshold=best["threshold"], default=default), grid
