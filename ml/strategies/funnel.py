"""The prescreen funnel: which stocks the stock book considers on each day.

Timing: the row of day t uses only what is known at the close of t - the prescreen score dated t (the model
of t's VIX regime, trained on labels that all ended before t; :mod:`ml.prescreen.models`) and the features
dated t. Candidates decided at the close of t trade at the open of t+1.

``candidates(t) = top N stocks by P(buy) among those with a score and a bar at t`` (ties broken by ticker
order), ``plus every stock held going into t`` (so the book can always decide to sell what it holds).
"""
from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_TOP_N", "candidate_mask", "daily_top_n", "prescreen_signal", "top_n_ranks"]

DEFAULT_TOP_N = 25


def top_n_ranks(buy_prob: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rank (1 = highest P(buy)) of each stock on each day ``[T, S]`` among the scored, valid stocks; 0 for
    stocks without a finite score or not ``valid``. Ties: the lower column index ranks first (stable)."""
    p = np.asarray(buy_prob, dtype=float)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(p)
    key = np.where(ok, -p, np.inf)
    order = np.argsort(key, axis=-1, kind="stable")
    ranks = np.argsort(order, axis=-1, kind="stable") + 1
    return np.where(ok, ranks, 0)


def daily_top_n(buy_prob: np.ndarray, valid: np.ndarray, n: int = DEFAULT_TOP_N) -> np.ndarray:
    """``[T, S]`` bool: the stock is among the day's top ``n`` by P(buy) (scored and valid stocks only)."""
    if n < 1:
        raise ValueError(f"the funnel needs n >= 1 candidates, got {n}")
    r = top_n_ranks(buy_prob, valid)
    return (r >= 1) & (r <= n)


def candidate_mask(top_n_row: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Candidates of one day ``[S]`` (or a batch ``[..., S]``): the day's top N plus the stocks held (weight > 0)."""
    return np.asarray(top_n_row, dtype=bool) | (np.asarray(held) > 0)


def prescreen_signal(buy_prob: np.ndarray, sell_prob: np.ndarray) -> np.ndarray:
    """The prescreen's signal in [-1, 1]: ``P(buy) - P(sell)`` of the day's regime models (0 where unscored)."""
    s = np.asarray(buy_prob, dtype=float) - np.asarray(sell_prob, dtype=float)
    return np.clip(np.nan_to_num(s, nan=0.0), -1.0, 1.0)
