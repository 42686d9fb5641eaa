"""The stock book's daily loop: prescreen funnel -> RL ensemble -> decision engine -> fills, with its trades,
per-signal P&L attribution and decision log; and the long-only comparisons through the same accounting.

Timing (the project's convention). At the close of day t the book reads what is known then: the day's top-N
candidates by P(buy) (plus the names it holds), their prescreen, RL and technical signals, the VIX close and
band of t, each held name's close against its stop. The decision engine (:mod:`ml.decision_engine`) sets
target weights; the order fills at the open of t+1: the weights held overnight earn the gap close t -> open
t+1, the new weights earn the session open -> close of t+1 (a row dated t+1 is the return earned on t+1).

Accounting (long-only, :func:`ml.backtest.sector_book.fill_day`): ``cost = cost_rate * sum|w_new - w_open|``
per side (default 5 bp slippage + 1 bp commission), ``net = (1 + w_old.g)(1 - cost)(1 + w_new.i) - 1``,
cash earns 0. A name the engine keeps (HOLD, cooldown, below the minimum trade) is not traded: its target is
its weight at the open (no drift trading).

Trades: one per name from the fill that opens it to the fill that closes it; P&L in fractions of equity
(costs included, additive over days), holding period in earned sessions, the exit reason (``sell``,
``stop``, ``regime`` (the extreme band flattens the book), ``end`` (still open at the window's end)).

Attribution: the P&L a name earns each day is split over the signal sources in proportion to their weighted
contributions ``w_k s_k`` to the score of the decision that last bought or resized it (signed shares that sum
to 1; equal shares when that score is ~0). The sum over sources equals the sum of the per-name P&L (an
additive approximation of the book's compounded net return).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.backtest.sector_book import fill_day
from ml.decision_engine import (
    ACTION_NAMES,
    BUY,
    SOURCES,
    EngineConfig,
    decide_day,
    max_position_pct,
    rl_signal,
    stop_hit,
)
from ml.envs.stock_panel import StockPanel
from ml.strategies.funnel import prescreen_signal

__all__ = ["DAILY_SCHEMA", "StockBookInputs", "StockBookResult", "run_stock_book", "run_weights"]

NEVER = 10**6  # "sessions since the last trade" of a name never traded

DAILY_SCHEMA = {"date": pl.Date, "net_return": pl.Float64, "gross_return": pl.Float64, "turnover": pl.Float64,
                "cost": pl.Float64, "borrow": pl.Float64, "equity": pl.Float64, "long_exposure": pl.Float64,
                "short_exposure": pl.Float64, "positions": pl.Int64, "candidates": pl.Int64, "band": pl.Utf8,
                "vix": pl.Float64}
TRADE_SCHEMA = {"strategy": pl.Utf8, "ticker": pl.Utf8, "entry_date": pl.Date, "exit_date": pl.Date,
                "pnl": pl.Float64, "holding_days": pl.Int64, "closed": pl.Boolean, "exit_reason": pl.Utf8,
                "entry_conviction": pl.Float64, "entry_prescreen": pl.Float64, "entry_rl": pl.Float64,
                "entry_technical": pl.Float64, "max_weight": pl.Float64}
DECISION_SCHEMA = {"date": pl.Date, "ticker": pl.Utf8, "rank": pl.Int64, "top_n": pl.Boolean, "held": pl.Boolean,
                   "buy_probability": pl.Float64, "sell_probability": pl.Float64, "signal_prescreen": pl.Float64,
                   "signal_rl": pl.Float64, "rl_action": pl.Float64, "signal_technical": pl.Float64,
                   "weight_prescreen": pl.Float64, "weight_rl": pl.Float64, "weight_technical": pl.Float64,
                   "score": pl.Float64, "agreement": pl.Float64, "conviction": pl.Float64, "action": pl.Utf8,
                   "stop_hit": pl.Boolean, "held_weight": pl.Float64, "target_weight": pl.Float64,
                   "band": pl.Utf8, "vix": pl.Float64, "max_position": pl.Float64}
SIGNALS = SOURCES[:3]  # prescreen, rl, technical: the sources with data


@dataclass
class StockBookInputs:
    """What the loop reads besides the engine config, all aligned on ``panel``'s rows (known at each close).

    ``technical`` ``[T, S]`` composite technical signal (NaN = unknown); ``atr_pct`` ``[T, S]`` ATR(14) as a
    fraction of the close (the stop distance); ``band`` ``[T]`` the VIX band of each day (None = unknown: the
    book holds); ``rank``/``top_n`` ``[T, S]`` the funnel (rank 1 = highest P(buy), 0 = unranked);
    ``returns`` ``[T, S]`` close-to-close simple returns (NaN = no bar; the max-Sharpe covariance);
    ``rl_action(t, held [S]) -> [S]`` the RL ensemble's action for a decision at the close of row t given the
    weights held then (None = no RL policy: its signal is missing and the engine renormalises)."""

    panel: StockPanel
    technical: np.ndarray
    atr_pct: np.ndarray
    band: np.ndarray
    rank: np.ndarray
    top_n: np.ndarray
    returns: np.ndarray
    rl_action: Callable[[int, np.ndarray], np.ndarray] | None = None


@dataclass
class StockBookResult:
    daily: pl.DataFrame  #: earned date, net/gross return, turnover, cost, equity, exposure, positions, band
    trades: pl.DataFrame  #: one row per trade (TRADE_SCHEMA)
    attribution: pl.DataFrame  #: P&L per signal source (fractions of equity, summed over the window)
    decisions: pl.DataFrame  #: the decision log (DECISION_SCHEMA), empty unless requested
    weights: np.ndarray  #: [days, S] weights after each fill


def _date(d) -> object:
    return np.datetime64(d, "D").astype(object)


def _shares(weights_used: np.ndarray, signals: np.ndarray) -> np.ndarray:
    """Signed shares ``w_k s_k / sum_k w_k s_k`` of one decision's sources (equal over the used ones when the
    score is ~0)."""
    contrib = np.nan_to_num(weights_used * signals, nan=0.0)
    total = contrib.sum()
    if abs(total) < 1e-12:
        used = weights_used > 0
        return used / max(used.sum(), 1)
    return contrib / total


def run_stock_book(data: StockBookInputs, lo: int, hi: int, cfg: EngineConfig, cost_rate: float,
                   strategy: str = "stock_book", log_decisions: bool = False) -> StockBookResult:
    """Run the book on decisions at rows ``lo .. hi-1`` (earned rows ``lo+1 .. hi``), from all cash."""
    p = data.panel
    if not 0 <= lo < hi <= p.n_dates - 1:
        raise ValueError(f"decision rows [{lo}, {hi}) do not fit a panel of {p.n_dates} rows")
    s_n = p.n_stocks
    w = np.zeros(s_n)
    entry_price = np.full(s_n, np.nan)
    entry_atr = np.full(s_n, np.nan)
    last_trade = np.full(s_n, -NEVER)
    share = np.zeros((s_n, len(SOURCES)))
    attribution = np.zeros(len(SOURCES) + 1)  # the sources, then "unattributed"
    open_trade: dict[int, dict] = {}
    trades, rows, decisions, held_w = [], [], [], []
    equity = 1.0
    for t in range(lo, hi):
        held = w
        band = data.band[t]
        cand = data.top_n[t] | (held > 0)
        rl_a = data.rl_action(t, held) if data.rl_action is not None else np.full(s_n, np.nan)
        signals = np.full((s_n, len(SOURCES)), np.nan)
        scored = np.isfinite(p.buy_prob[t]) & np.isfinite(p.sell_prob[t])
        signals[scored, 0] = prescreen_signal(p.buy_prob[t, scored], p.sell_prob[t, scored])
        signals[:, 1] = np.where(np.isfinite(rl_a), rl_signal(np.nan_to_num(rl_a), held, cfg), np.nan)
        signals[:, 2] = data.technical[t]
        stop = (held > 0) & stop_hit(p.close[t], entry_price, entry_atr, cfg)
        window = None
        if cfg.weighting == "max_sharpe":
            window = data.returns[max(t - cfg.max_sharpe_lookback + 1, 0): t + 1]
        g, i = p.gap[t + 1], p.session[t + 1]
        eq_on = 1.0 + float(held @ g)
        w_open = held * (1.0 + g) / eq_on
        if band is None:  # no VIX band known at t: hold everything
            dec = None
            target = w_open
        else:
            dec = decide_day(signals, cand, held, band, float(p.vix[t]), cfg,
                             days_since_trade=t - last_trade, stop=stop, returns_window=window)
            target = np.where(dec.targets == held, w_open, dec.targets)
        fill = fill_day(held, target, g, i, cost_rate, 0.0)
        traded = np.abs(fill.w_new - fill.w_open) > 1e-12
        last_trade[traded] = t
        if dec is not None:
            for j in np.flatnonzero(traded & (fill.w_new > 0) & (dec.action == BUY)):
                share[j] = _shares(dec.weights_used[j], signals[j])
        # per-name P&L of the day, attributed with each name's shares (the exit day's overnight leg included)
        pnl = fill.pnl
        has = (held > 0) | (fill.w_new > 0)
        attributed = share[has].sum(axis=1) != 0
        attribution[:-1] += (pnl[has][:, None] * share[has]).sum(axis=0)
        attribution[-1] += pnl[has][~attributed].sum()
        for j in np.flatnonzero(has):
            if held[j] == 0 and fill.w_new[j] > 0:  # opens at the open of t+1
                entry_price[j] = p.close[t, j] * (1.0 + g[j])
                entry_atr[j] = data.atr_pct[t, j]
                open_trade[j] = {"ticker": p.tickers[j], "entry_date": _date(p.dates[t]), "pnl": 0.0, "days": 0,
                                 "entry_conviction": float(dec.conviction[j]) if dec is not None else None,
                                 "signals": signals[j, :3].copy(), "max_weight": 0.0}
            tr = open_trade.get(j)
            if tr is None:
                continue
            tr["pnl"] += float(pnl[j])
            if fill.w_new[j] > 0:
                tr["days"] += 1
                tr["max_weight"] = max(tr["max_weight"], float(fill.w_new[j]))
            else:  # closed at the open of t+1
                reason = "stop" if stop[j] else ("regime" if dec is not None and not dec.targets.any() else "sell")
                trades.append({**open_trade.pop(j), "exit_date": _date(p.dates[t]), "exit_reason": reason})
                entry_price[j] = entry_atr[j] = np.nan
                share[j] = 0.0
        if log_decisions and dec is not None:
            for j in np.flatnonzero(cand):
                decisions.append((
                    _date(p.dates[t]), p.tickers[j], int(data.rank[t, j]), bool(data.top_n[t, j]), bool(held[j] > 0),
                    _f(p.buy_prob[t, j]), _f(p.sell_prob[t, j]), _f(signals[j, 0]), _f(signals[j, 1]), _f(rl_a[j]),
                    _f(signals[j, 2]), *(float(x) for x in dec.weights_used[j, :3]), _f(dec.score[j]),
                    _f(dec.agreement[j]), _f(dec.conviction[j]), ACTION_NAMES[int(dec.action[j])], bool(stop[j]),
                    float(held[j]), float(dec.targets[j]), band, float(p.vix[t]), float(max_position_pct(float(p.vix[t]), cfg))))
        equity *= 1.0 + fill.net
        rows.append((_date(p.dates[t + 1]), fill.net, fill.gross, fill.turnover, fill.cost, 0.0, equity,
                     float(fill.w_new.sum()), 0.0, int((fill.w_new > 0).sum()), int(cand.sum()), band,
                     float(p.vix[t])))
        held_w.append(fill.w_new)
        w = fill.w_after
    for tr in open_trade.values():  # still open at the window's end: marked, not closed
        trades.append({**tr, "exit_date": None, "exit_reason": "end"})
    daily = pl.DataFrame(rows, schema=DAILY_SCHEMA, orient="row").with_columns(pl.lit(strategy).alias("strategy"))
    attr = pl.DataFrame({"strategy": [strategy] * (len(SOURCES) + 1), "source": [*SOURCES, "unattributed"],
                         "pnl": attribution.tolist()})
    return StockBookResult(daily.select("strategy", pl.exclude("strategy")), _trade_frame(trades, strategy), attr,
                           pl.DataFrame(decisions, schema=DECISION_SCHEMA, orient="row"),
                           np.array(held_w).reshape(-1, s_n))


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _trade_frame(trades: list[dict], strategy: str) -> pl.DataFrame:
    rows = []
    for tr in trades:
        s = tr["signals"]
        rows.append((strategy, tr["ticker"], tr["entry_date"], tr["exit_date"], tr["pnl"], tr["days"],
                     tr["exit_date"] is not None, tr["exit_reason"], tr["entry_conviction"], _f(s[0]), _f(s[1]),
                     _f(s[2]), tr["max_weight"]))
    return pl.DataFrame(rows, schema=TRADE_SCHEMA, orient="row").sort("entry_date", "ticker")


def run_weights(gap: np.ndarray, session: np.ndarray, dates: np.ndarray, lo: int, hi: int,
                targets: Callable[[int], np.ndarray], rebalance: np.ndarray, cost_rate: float, strategy: str,
                band: float = 0.0) -> pl.DataFrame:
    """A long-only comparison through the same accounting: ``targets(t) -> weights [S]`` on the decision rows
    where ``rebalance[t]`` (and the first), drifting in between; a held weight trades only when its target
    differs by more than ``band``. ``gap``/``session`` ``[T, S]`` as in :class:`StockPanel`."""
    w = np.zeros(gap.shape[1])
    equity = 1.0
    rows = []
    for t in range(lo, hi):
        target = targets(t) if (rebalance[t] or t == lo) else None
        fill = fill_day(w, target, gap[t + 1], session[t + 1], cost_rate, 0.0, band)
        equity *= 1.0 + fill.net
        rows.append((_date(dates[t + 1]), fill.net, fill.gross, fill.turnover, fill.cost, 0.0, equity,
                     float(fill.w_new.sum()), 0.0, int((fill.w_new > 0).sum()), 0, None, None))
        w = fill.w_after
    return pl.DataFrame(rows, schema=DAILY_SCHEMA, orient="row").with_columns(
        pl.lit(strategy).alias("strategy")).select("strategy", pl.exclude("strategy"))
