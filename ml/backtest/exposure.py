"""Backtest of an exposure to one asset that may be levered (> 1) or short (< 0), the rest in cash.

The long-only backtester (:mod:`ml.backtest.engine`) refuses such weights; the Q-learning agents and their
stacks propose them (exposure ``a`` in SPY: 1.5 = 150 % invested on borrowed cash, -0.5 = short half the
equity). The arithmetic is :func:`ml.costs.rebalance`'s (same turnover, costs, fills and drift) on the
weights ``[a, 1 - a]`` over (asset, cash), rebalanced at every decision; on top of it a daily carry:

* borrowed cash (``a > 1``) pays ``financing.borrow_rate`` a year on ``a - 1``;
* a short (``a < 0``) pays ``financing.short_fee`` a year on ``|a|`` (its proceeds earn nothing: cash
  earns 0 in this project).

Both are charged per earned day (``rate / 252``) and are part of the gross return (they are carry, not
trading costs: the 2×/3× cost stress leaves them alone). Zero rates give the like-for-like frictionless
book of the thesis reproduction.

Timing: the exposure decided at the close of row t earns row t+1 (``execution`` as in :mod:`ml.costs`).
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ml import costs as cost_model
from ml.backtest.engine import BacktestResult
from ml.costs import Execution, carry_weights

__all__ = ["Financing", "backtest_exposure", "exposure_weights"]


class Financing(BaseModel):
    """Annual carry rates (fractions): on borrowed cash and on the notional of a short."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    borrow_rate: float = Field(default=0.02, ge=0.0, description="a year on borrowed cash (a - 1 when a > 1)")
    short_fee: float = Field(default=0.005, ge=0.0, description="a year on a short's notional (|a| when a < 0)")


def exposure_weights(exposure: np.ndarray, n_assets: int, column: int) -> np.ndarray:
    """``[n, A+1]`` weights: ``exposure`` in ``column``, ``1 - exposure`` in cash (last), 0 elsewhere."""
    a = np.asarray(exposure, dtype=np.float64).reshape(-1)
    w = np.zeros((a.size, n_assets + 1))
    w[:, column] = a
    w[:, -1] = 1.0 - a
    return w


def backtest_exposure(exposure: np.ndarray, panel, start_idx: int, end_idx: int, cost_rate: float,
                      asset: str = "SPY", cost_multiplier: float = 1.0, financing: Financing | None = None,
                      execution: Execution = "close") -> BacktestResult:
    """Daily-rebalanced book holding ``exposure[i]`` of ``asset`` from the close of row ``start_idx + i``
    (``[n]``, ``n = end_idx - start_idx``), the rest in cash; starts from all cash. Returns the engine's
    :class:`BacktestResult` (``weights_held`` over every panel asset, cash may be negative)."""
    start_idx, end_idx = int(start_idx), int(end_idx)
    if not 0 <= start_idx < end_idx <= panel.n_dates - 1:
        raise ValueError(f"window [{start_idx}, {end_idx}] invalid for a panel of {panel.n_dates} rows")
    n, a = end_idx - start_idx, panel.n_assets
    x = np.asarray(exposure, dtype=np.float64).reshape(-1)
    if x.size != n or not np.isfinite(x).all():
        raise ValueError(f"exposure needs {n} finite values (one per decision day), got {x.size}")
    fin = financing or Financing()
    rate = float(cost_rate) * float(cost_multiplier)
    w_new = exposure_weights(x, a, panel.assets.index(asset))
    r = np.concatenate([panel.returns[start_idx + 1: end_idx + 1], np.zeros((n, 1))], axis=1)
    gaps = panel.gaps_for(execution)
    g = None if gaps is None else np.concatenate([gaps[start_idx + 1: end_idx + 1], np.zeros((n, 1))], axis=1)
    w0 = np.zeros(a + 1)
    w0[-1] = 1.0
    w_in = np.concatenate([w0[None, :], carry_weights(w_new[:-1], r[:-1], execution=execution,
                                                      gap_returns=None if g is None else g[:-1])], axis=0)
    res = cost_model.rebalance(w_new, w_in, r, rate, execution=execution, gap_returns=g)
    carry = (np.maximum(x - 1.0, 0.0) * fin.borrow_rate + np.maximum(-x, 0.0) * fin.short_fee) / 252.0
    return BacktestResult(
        dates=panel.dates[start_idx + 1: end_idx + 1].copy(),
        decision_dates=panel.dates[start_idx:end_idx].copy(),
        weights_held=w_new,
        net_returns=np.asarray(res.net, dtype=np.float64) - carry,
        gross_returns=np.asarray(res.gross, dtype=np.float64) - carry,
        turnover=np.asarray(res.turnover, dtype=np.float64),
        costs=rate * np.asarray(res.turnover, dtype=np.float64),
        rebalanced=np.ones(n, dtype=bool),
        assets=tuple(panel.assets),
        cost_rate=rate,
    )
