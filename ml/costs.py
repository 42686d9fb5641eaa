"""Rebalancing, transaction costs and weight drift: the ONE implementation of the portfolio arithmetic.

Used verbatim by both faces of the RL environment (:mod:`ml.envs.portfolio`) and by the backtester, so
an environment's reward and a backtest's P&L can never disagree. Written with operators/methods that
NumPy arrays and Torch tensors share (works on CPU or CUDA tensors, any float dtype, any leading batch
shape ``...``).

Timing (project convention): weights ``w_new`` are chosen at the close of day t and held from close t
to close t+1; ``next_returns`` are the simple close-to-close returns of day t+1, i.e.
``close_{t+1} / close_t - 1``. ``w_old`` are the weights held going into the decision (yesterday's
weights after drifting with day t's returns).

Weights are fractions of equity over the assets *and cash*, cash in the LAST column, each row on the
simplex (>= 0, sums to 1). Cash earns ``0`` unless a cash column is supplied in ``next_returns``.

Costs: ``cost = cost_rate * turnover`` with ``turnover = sum_i |w_new_i - w_old_i|`` over all columns
including cash (so moving 10% of equity from SPY to cash has turnover 0.2 and, at 5 bps, costs 0.0001 of
equity). The cost is charged as a fraction of equity at the close of t; net return of day t+1:
``net = w_new . r_{t+1} - cost``.

Drift: after day t+1 each position grows with its own return, so the weights held going into t+1 are
``w_new * (1 + r) / (1 + w_new . r)`` (gross return in the denominator: the cost is treated as taken
pro rata from all holdings, which leaves the weights unchanged). This is exact buy-and-hold drift.

Execution (``execution``; when the order decided at the close of t fills):

* ``"close"``: at the close of t itself (the formulas above; the like-for-like setting of the seed
  reproduction). Optimistic: the decision needs the close (and the 16:15 ET VIX close) it trades at.
* ``"next_open"`` (the default of ``ml.envs.portfolio.EnvConfig``): at the open of t+1. The old weights
  earn the overnight gap ``g`` (close t -> open t+1) and drift to ``w_open``; the book trades
  ``w_open -> w_new`` at the open paying ``cost_rate * sum|w_new - w_open|``; the new weights earn the
  session ``i = (1 + r) / (1 + g) - 1`` (open t+1 -> close t+1).
  ``net = (1 + w_old.g) (1 - cost) (1 + w_new.i) - 1``; the weights then drift with ``i``. Needs
  ``gap_returns`` (the panel's ``gaps``, from adjusted opens).
* ``"next_close"``: at the close of t+1. The old weights earn all of day t+1, then the book trades to
  ``w_new``: ``net = (1 + w_old.r) (1 - cost) - 1``; ``w_new`` is held from the close of t+1 (it earns
  from the next step on), so the weights going into the next decision are ``w_new`` itself.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = ["EXECUTIONS", "Execution", "RebalanceResult", "carry_weights", "drift_weights", "hold_target", "net_returns",
           "rebalance"]


class RebalanceResult(NamedTuple):
    """Outputs of :func:`rebalance`; every field has the leading batch shape ``...`` (weights ``[..., A+1]``)."""

    net: Any  #: net return of day t+1 (fraction of the equity at close t): ``gross - cost`` for ``"close"``
    gross: Any  #: day t+1's return before costs (``w_new . r_{t+1}`` for ``"close"``)
    turnover: Any  #: ``sum |w_new - w_held|`` incl. cash (0 .. 2), ``w_held`` = the weights at the fill
    drifted: Any  #: weights going into the next decision (after day t+1), on the simplex


def _with_cash(next_returns: Any, n_cols: int, axis: int) -> Any:
    """Append a zero cash-return entry along ``axis`` when ``next_returns`` has only the risky assets."""
    if next_returns.shape[axis] == n_cols:
        return next_returns
    if next_returns.shape[axis] != n_cols - 1:
        raise ValueError(
            f"next_returns has {next_returns.shape[axis]} assets; expected {n_cols - 1} (+ optional cash)"
        )
    if isinstance(next_returns, np.ndarray):
        shape = list(next_returns.shape)
        shape[axis] = 1
        return np.concatenate([next_returns, np.zeros(shape, dtype=next_returns.dtype)], axis=axis)
    import torch

    shape = list(next_returns.shape)
    shape[axis] = 1
    zeros = torch.zeros(shape, dtype=next_returns.dtype, device=next_returns.device)
    return torch.cat([next_returns, zeros], dim=axis)


def _unsqueeze(x: Any, axis: int) -> Any:
    if isinstance(x, (np.ndarray, np.generic, float)):
        return np.expand_dims(x, axis)
    return x.unsqueeze(axis)


Execution = Literal["close", "next_open", "next_close"]
EXECUTIONS: tuple[str, ...] = ("close", "next_open", "next_close")


def rebalance(
    weights_new: Any, weights_old: Any, next_returns: Any, cost_rate: float, axis: int = -1, *,
    execution: Execution = "close", gap_returns: Any = None,
) -> RebalanceResult:
    """Rebalance from ``weights_old`` to ``weights_new`` decided at close t, earn day t+1, drift the weights.

    ``weights_new``/``weights_old``: ``[..., A+1]`` (cash last). ``next_returns``: ``[..., A]`` simple
    close-to-close returns of the risky assets over t -> t+1 (cash earns 0), or ``[..., A+1]`` with an
    explicit cash return in the last column. ``cost_rate``: cost per unit of turnover (0.0005 = 5 bps).
    ``axis``: the asset axis (default last; the batched environment keeps assets first, ``[A+1, E]``).
    ``execution``: when the order fills (module docstring); ``gap_returns`` (same shape as
    ``next_returns``, close t -> open t+1) are required for ``"next_open"``.
    """
    r = _with_cash(next_returns, weights_new.shape[axis], axis)
    if execution == "close":
        turnover = abs(weights_new - weights_old).sum(axis)
        gross = (weights_new * r).sum(axis)
        net = gross - cost_rate * turnover
        return RebalanceResult(net, gross, turnover, carry_weights(weights_new, r, axis))
    if execution == "next_open":
        if gap_returns is None:
            raise ValueError("execution='next_open' needs gap_returns (close t -> open t+1); the panel has no opens")
        g = _with_cash(gap_returns, weights_new.shape[axis], axis)
        gap_gross = (weights_old * g).sum(axis)  # the old book earns the overnight gap
        at_open = weights_old * (1.0 + g) / _unsqueeze(1.0 + gap_gross, axis)
        turnover = abs(weights_new - at_open).sum(axis)
        intraday = (1.0 + r) / (1.0 + g) - 1.0  # open t+1 -> close t+1
        day_gross = (weights_new * intraday).sum(axis)
        gross = (1.0 + gap_gross) * (1.0 + day_gross) - 1.0
        net = (1.0 + gap_gross) * (1.0 - cost_rate * turnover) * (1.0 + day_gross) - 1.0
        return RebalanceResult(net, gross, turnover, drift_weights(weights_new, intraday, axis))
    if execution == "next_close":
        gross = (weights_old * r).sum(axis)  # the old book earns all of day t+1
        at_close = weights_old * (1.0 + r) / _unsqueeze(1.0 + gross, axis)
        turnover = abs(weights_new - at_close).sum(axis)
        net = (1.0 + gross) * (1.0 - cost_rate * turnover) - 1.0
        return RebalanceResult(net, gross, turnover, carry_weights(weights_new, r, axis, execution=execution))
    raise ValueError(f"unknown execution {execution!r}; use one of {EXECUTIONS}")


def net_returns(weights_new: Any, weights_old: Any, next_returns: Any, cost_rate: float, axis: int = -1, *,
                execution: Execution = "close", gap_returns: Any = None) -> Any:
    """Net return of day t+1 for weights chosen at close t: ``w_new . r_{t+1} - cost_rate * sum|w_new - w_old|``.

    Shapes as in :func:`rebalance`; NumPy or Torch in, same kind out.
    """
    return rebalance(weights_new, weights_old, next_returns, cost_rate, axis, execution=execution,
                     gap_returns=gap_returns).net


def drift_weights(weights: Any, next_returns: Any, axis: int = -1) -> Any:
    """Weights after holding ``weights`` over one day with returns ``next_returns`` (cash return 0 if omitted)."""
    r = _with_cash(next_returns, weights.shape[axis], axis)
    return weights * (1.0 + r) / _unsqueeze(1.0 + (weights * r).sum(axis), axis)


def carry_weights(weights_new: Any, next_returns: Any, axis: int = -1, *, execution: Execution = "close",
                  gap_returns: Any = None) -> Any:
    """The weights going into the next decision after trading to ``weights_new``
    (:attr:`RebalanceResult.drifted`; it does not depend on the weights traded from): drifted over day t+1
    (``"close"``), over the session after the open fill (``"next_open"``), or ``weights_new`` itself, bought
    at the close of t+1 (``"next_close"``)."""
    if execution == "close":
        return drift_weights(weights_new, next_returns, axis)
    if execution == "next_open":
        r = _with_cash(next_returns, weights_new.shape[axis], axis)
        g = _with_cash(gap_returns, weights_new.shape[axis], axis)
        return drift_weights(weights_new, (1.0 + r) / (1.0 + g) - 1.0, axis)
    return weights_new * 1.0


def hold_target(weights: Any, next_returns: Any, axis: int = -1, *, execution: Execution = "close",
                gap_returns: Any = None) -> Any:
    """The target that trades nothing: the weights held at the moment the order would fill (``weights`` at
    the close of t; drifted over the gap for ``"next_open"``, over day t+1 for ``"next_close"``). The
    backtester uses it on days without a rebalance (buy and hold)."""
    if execution == "close":
        return weights
    if execution == "next_open":
        return drift_weights(weights, gap_returns, axis)
    return drift_weights(weights, next_returns, axis)
