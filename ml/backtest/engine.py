"""Vectorised daily backtester over a :class:`~ml.envs.market_panel.MarketPanel` window.

Timing (project convention, identical to :func:`ml.agents.ppo.evaluate_policy` and the environments):
the window ``(start_idx, end_idx)`` comes from :meth:`MarketPanel.index_range`; decisions are taken at
the close of rows ``start_idx .. end_idx-1`` (``n = end_idx - start_idx`` of them) and decision ``i``
(row ``start_idx + i``) earns ``returns[start_idx + i + 1]``. Every per-day output is aligned with the
*earned* dates ``panel.dates[start_idx+1 .. end_idx]``.

Arithmetic: every turnover, cost, net return and weight drift goes through
:func:`ml.costs.rebalance` (and its twin :func:`~ml.costs.drift_weights`), the same
code the RL environments use, so a backtest of a policy's weights reproduces the environment's net
returns. Weights are fractions of equity over the panel's assets and cash (cash LAST, earns 0).

Rebalancing: on a rebalance day the book trades from the weights it holds when the order fills (the
previous day's weights drifted with the day's returns, and over the overnight gap for
``execution="next_open"``) to the target, paying ``cost_rate * cost_multiplier * turnover``; on other days
it keeps the drifted weights (turnover 0, no cost), i.e. buy-and-hold between rebalances.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from ml import costs as cost_model
from ml.costs import Execution, carry_weights, hold_target

if TYPE_CHECKING:  # runtime import would make ml.backtest <-> ml.envs circular
    from ml.envs.market_panel import MarketPanel

__all__ = ["BacktestResult", "RebalanceRule", "TargetPolicy", "backtest", "month_start_mask", "start_weights"]

RebalanceRule = Literal["daily", "monthly", "never"] | np.ndarray
#: ``policy(row, weights_in) -> target [A+1]``: called at the close of decision ``row`` (panel row index)
#: on rebalance days with the weights held going into that decision (drifted, cash last).
TargetPolicy = Callable[[int, np.ndarray], np.ndarray]

_TOL = 1e-9


@dataclass(frozen=True)
class BacktestResult:
    """Per earned day (``n = end_idx - start_idx`` rows, aligned with ``dates``).

    ``dates`` ``datetime64[D] [n]``: the days whose return is earned (``panel.dates[start_idx+1 .. end_idx]``);
    ``decision_dates`` ``[n]``: the closes at which each day's weights were set (``dates`` shifted back one row);
    ``weights_held`` ``[n, A+1]``: weights after rebalancing at the close of the decision day (cash last),
    held over the earned day; ``net_returns`` / ``gross_returns`` ``[n]``: simple returns of the earned day
    (fractions) after / before costs; ``turnover`` ``[n]``: ``sum |w_held - w_in|`` incl. cash (0..2);
    ``costs`` ``[n]``: ``cost_rate * cost_multiplier * turnover`` (fraction of equity);
    ``rebalanced`` ``[n]`` bool: whether the book traded to its target at that decision.
    """

    dates: np.ndarray
    decision_dates: np.ndarray
    weights_held: np.ndarray
    net_returns: np.ndarray
    gross_returns: np.ndarray
    turnover: np.ndarray
    costs: np.ndarray
    rebalanced: np.ndarray
    assets: tuple[str, ...] = ()
    cost_rate: float = 0.0  #: effective cost per unit turnover (cost_rate * cost_multiplier)

    @property
    def equity(self) -> np.ndarray:
        """Compounded equity after each earned day, starting from 1.0 before the first."""
        return np.cumprod(1.0 + self.net_returns)

    def __len__(self) -> int:
        return int(self.net_returns.size)


def start_weights(n_assets: int, kind: str | np.ndarray = "cash") -> np.ndarray:
    """Weights held going into the first decision: ``"cash"`` (all cash), ``"equal"`` (equal over the
    assets *and* cash, as :func:`ml.envs.portfolio.initial_weights`) or an explicit ``[A+1]`` vector."""
    if isinstance(kind, str):
        if kind == "cash":
            w = np.zeros(n_assets + 1)
            w[-1] = 1.0
            return w
        if kind == "equal":
            return np.full(n_assets + 1, 1.0 / (n_assets + 1))
        raise ValueError(f"unknown initial_weights {kind!r}; use 'cash', 'equal' or an array")
    return _check_weights(np.asarray(kind, dtype=np.float64).reshape(-1), n_assets, "initial_weights")


def month_start_mask(panel: MarketPanel, start_idx: int, end_idx: int) -> np.ndarray:
    """``[n]`` bool: decision row ``start_idx + i`` is the first panel row of its calendar month.

    The row before ``start_idx`` (if any) decides whether ``start_idx`` itself starts a month."""
    months = panel.dates.astype("datetime64[M]")
    rows = np.arange(start_idx, end_idx)
    prev = np.maximum(rows - 1, 0)
    mask = months[rows] != months[prev]
    if start_idx == 0:
        mask[0] = True
    return mask


def _check_weights(w: np.ndarray, n_assets: int, what: str) -> np.ndarray:
    if w.shape[-1] != n_assets + 1:
        raise ValueError(f"{what} has {w.shape[-1]} columns; expected {n_assets + 1} (assets + cash last)")
    if not np.isfinite(w).all():
        raise ValueError(f"{what} contains NaN/inf")
    if (w < -_TOL).any() or (np.abs(w.sum(-1) - 1.0) > _TOL).any():
        raise ValueError(f"{what} must be long-only weights summing to 1 (cash last)")
    return w


def _rebalance_mask(rule: RebalanceRule | bool, panel: MarketPanel, start_idx: int, end_idx: int) -> np.ndarray:
    n = end_idx - start_idx
    if isinstance(rule, (bool, np.bool_)):
        rule = "daily" if rule else "never"
    if isinstance(rule, str):
        if rule == "daily":
            return np.ones(n, dtype=bool)
        if rule == "never":
            mask = np.zeros(n, dtype=bool)
        elif rule == "monthly":
            mask = month_start_mask(panel, start_idx, end_idx)
        else:
            raise ValueError(f"unknown rebalance rule {rule!r}; use 'daily', 'monthly', 'never' or a bool mask")
        mask[0] = True  # the entry trade: from the initial weights to the first target
        return mask
    mask = np.asarray(rule, dtype=bool).reshape(-1)
    if mask.size != n:
        raise ValueError(f"rebalance mask has {mask.size} entries; expected {n} (one per decision day)")
    return mask.copy()


def backtest(
    target_weights: np.ndarray | TargetPolicy,
    panel: MarketPanel,
    start_idx: int,
    end_idx: int,
    cost_rate: float,
    cost_multiplier: float = 1.0,
    rebalance: RebalanceRule | bool = "daily",
    initial_weights: str | np.ndarray = "cash",
    execution: Execution = "close",
) -> BacktestResult:
    """Backtest target weights over panel rows ``[start_idx, end_idx]`` (decisions at ``start_idx .. end_idx-1``).

    ``target_weights``: ``[n, A+1]`` (row ``i`` = target chosen at the close of row ``start_idx + i``;
    rows on non-rebalance days are ignored), a constant ``[A+1]`` target, or a callable
    ``policy(row, weights_in) -> [A+1]`` evaluated at the close of each rebalance day (it must use only
    data <= that close). Weights are long-only, sum to 1, cash last.
    ``cost_rate``: cost per unit of turnover (0.0005 = 5 bps); ``cost_multiplier`` scales it (stress tests).
    ``rebalance``: ``"daily"`` (trade to target at every decision), ``"monthly"`` (at the close of the
    first trading day of each month), ``"never"`` (buy and hold), for these three the first decision always
    trades from ``initial_weights``; ``True``/``False`` = daily/never; or a bool mask ``[n]`` used as given.
    ``initial_weights``: weights held going into the first decision (``"cash"`` default, as the env).
    ``execution``: when each decision's order fills (:mod:`ml.costs`: ``"close"``, ``"next_open"`` - needs
    ``panel.gaps`` - or ``"next_close"``); on days without a rebalance the book holds whatever it has then.
    """
    start_idx, end_idx = int(start_idx), int(end_idx)
    if not 0 <= start_idx < end_idx <= panel.n_dates - 1:
        raise ValueError(f"window [{start_idx}, {end_idx}] invalid for a panel of {panel.n_dates} rows")
    if cost_rate < 0 or cost_multiplier < 0:
        raise ValueError("cost_rate and cost_multiplier must be >= 0")
    n, a = end_idx - start_idx, panel.n_assets
    rate = float(cost_rate) * float(cost_multiplier)
    # earned returns with the explicit cash column (0), row i = returns[start_idx + i + 1]
    r = np.concatenate([panel.returns[start_idx + 1 : end_idx + 1], np.zeros((n, 1))], axis=1)
    mask = _rebalance_mask(rebalance, panel, start_idx, end_idx)
    w0 = start_weights(a, initial_weights)
    gaps = panel.gaps_for(execution)
    g = None if gaps is None else np.concatenate([gaps[start_idx + 1 : end_idx + 1], np.zeros((n, 1))], axis=1)

    def after(w_traded: np.ndarray, i) -> np.ndarray:  # weights going into the next decision
        return carry_weights(w_traded, r[i], execution=execution, gap_returns=None if g is None else g[i])

    def hold(w: np.ndarray, i: int) -> np.ndarray:  # the target that trades nothing on day i
        return hold_target(w, r[i], execution=execution, gap_returns=None if g is None else g[i])

    if callable(target_weights):
        w_new = np.empty((n, a + 1))
        w_in = np.empty((n, a + 1))
        w = w0
        for i in range(n):
            w_in[i] = w
            w_new[i] = target_weights(start_idx + i, w.copy()) if mask[i] else hold(w, i)
            w = after(w_new[i], i)
        _check_weights(w_new[mask], a, "policy targets")
    else:
        tw = np.asarray(target_weights, dtype=np.float64)
        if tw.ndim == 1:
            tw = np.broadcast_to(tw, (n, tw.size))
        if tw.shape[0] != n:
            raise ValueError(f"target_weights has {tw.shape[0]} rows; expected {n} (one per decision day)")
        _check_weights(tw[mask], a, "target_weights")
        if mask.all():  # fully vectorised: w_in[i] = w_new[i-1] after its earned day
            w_new = np.array(tw, dtype=np.float64)
            w_in = np.concatenate([w0[None, :], after(w_new[:-1], slice(0, n - 1))], axis=0)
        else:
            w_new = np.empty((n, a + 1))
            w_in = np.empty((n, a + 1))
            w = w0
            for i in range(n):
                w_in[i] = w
                w_new[i] = tw[i] if mask[i] else hold(w, i)
                w = after(w_new[i], i)

    # (``rebalance`` is the schedule argument here)
    res = cost_model.rebalance(w_new, w_in, r, rate, execution=execution, gap_returns=g)
    gross = np.asarray(res.gross, dtype=np.float64)
    net = np.asarray(res.net, dtype=np.float64)
    turnover = np.asarray(res.turnover, dtype=np.float64)
    return BacktestResult(
        dates=panel.dates[start_idx + 1 : end_idx + 1].copy(),
        decision_dates=panel.dates[start_idx:end_idx].copy(),
        weights_held=w_new,
        net_returns=net,
        gross_returns=gross,
        turnover=turnover,
        costs=rate * turnover,
        rebalanced=mask,
        assets=tuple(panel.assets),
        cost_rate=rate,
    )

