"""The sector-regime book: a daily long/short stock book over regime-conditioned group strategies, with
a Thompson-sampling bandit choosing the groups, and its accounting (costs, borrow, caps, trades).

Timing (the project's convention). At the close of day t the book reads what is known then - each group's
filtered regime, 20-session momentum, the pair policy's position for t - and sets target weights; the
order fills at the open of t+1 (``execution="next_open"``, default: the weights held overnight earn the gap
close t -> open t+1, the new weights earn open -> close of t+1) or at the close of t (``"close"``). A row
dated t+1 is the return earned on t+1.

Weights are signed fractions of equity (short < 0); cash (incl. short proceeds) earns 0. Per earned day:

* ``cost = cost_rate * sum_i |w_new_i - w_open_i|`` with ``cost_rate`` = (slippage + commission) per side
  (default 5 + 1 bp), i.e. every unit of equity traded pays it once (both the buy and the sell side of a
  round trip pay);
* ``borrow = borrow_rate / 252 * sum_i max(-w_new_i, 0)`` on the shorts held (default 0.5 %/yr, the
  general-collateral fee of liquid large caps; configurable);
* ``net = (1 + w_old.g) (1 - cost - borrow) (1 + w_new.i) - 1``; ``gross`` is the same without ``cost``
  (borrow is a carry, part of gross, so cost stress ``gross - m * cost`` leaves it alone);
* after the day the weights drift: ``w_new (1 + i) / (1 + w_new.i)``.

Book rules: each traded group gets ``1 / max(groups_per_day, groups traded)`` of equity; bull longs 3 stocks
(1/3 of the group's capital each), bear shorts 2 (1/2 each; long-only: cash), a sideways group splits its
capital over its pairs (each pair a gross-1 spread scaled by the pair policy's position in [-1, 1]). Then
every weight is capped at ``max_weight`` (5 %), at most ``max_positions`` (20) names are held (the largest
targets), and a held weight is left alone unless its target differs by more than ``rebalance_band`` (1 % of
equity) or changes sign (no daily drift trading).

A trade is one ticker's position from the decision that opens it to the decision that closes or flips it;
its P&L (fraction of equity, costs and borrow included) is known at the close of its exit day, when the
bandit is updated with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ml.strategies.bandit import ThompsonBandit
from ml.strategies.sector_regime import BEAR, BULL, REGIMES, SIDEWAYS, bear_picks, bull_picks, momentum

SLEEVES = ("bull", "bear", "pairs")


class SectorBookConfig(BaseModel):
    """Sector-book rules (defaults: the reference design's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    groups_per_day: int = Field(default=5, ge=1, description="groups traded per day (the bandit's top draws)")
    use_bandit: bool = Field(default=True, description="False: trade every group with a regime")
    long_only: bool = Field(default=False, description="no shorts: bear and pair capital stays in cash")
    max_positions: int = Field(default=20, ge=1)
    max_weight: float = Field(default=0.05, gt=0, le=1, description="cap per name, fraction of equity")
    bull_n: int = Field(default=3, ge=1)
    bear_n: int = Field(default=2, ge=1)
    momentum_lookback: int = Field(default=20, ge=1, description="sessions of the picks' momentum")
    slippage_bps: float = Field(default=5.0, ge=0)
    commission_bps: float = Field(default=1.0, ge=0)
    borrow_rate: float = Field(default=0.005, ge=0, description="annual fee on short gross, charged per day /252")
    rebalance_band: float = Field(default=0.01, ge=0, description="min |target - held| that trades a held name")
    execution: Literal["next_open", "close"] = "next_open"
    seed: int = 0

    @property
    def cost_rate(self) -> float:
        """Cost per unit of equity traded, per side (fraction)."""
        return (self.slippage_bps + self.commission_bps) * 1e-4


@dataclass
class BookMarket:
    """Aligned arrays on one date axis (the decision and earned days), all known at each date's close.

    ``close``/``open_`` [T, S] adjusted prices (NaN = no bar); ``members`` the stock columns of each group;
    ``regime`` [T, G] (0 Bull, 1 Sideways, 2 Bear, -1 no regime); pairs as column indices with their
    gross-1 leg weights (``w_a > 0``, ``w_b`` of the hedge's sign), ``pair_position`` [T, P] the pair
    policy's signed size for a decision at the close of t (NaN = flat)."""

    dates: np.ndarray
    tickers: list[str]
    close: np.ndarray
    open_: np.ndarray
    groups: list[str]
    members: list[np.ndarray]
    regime: np.ndarray
    pair_group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pair_a: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pair_b: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pair_w_a: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_w_b: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_position: np.ndarray | None = None

    def group_of(self) -> np.ndarray:
        out = np.full(len(self.tickers), -1, dtype=np.int64)
        for g, m in enumerate(self.members):
            out[m] = g
        return out


@dataclass
class BookResult:
    daily: pl.DataFrame  #: date (earned), net/gross return, turnover, cost, borrow, equity, exposures, names held
    trades: pl.DataFrame  #: one row per closed (or still open at the end) trade
    posterior: pl.DataFrame  #: the bandit's Beta posterior per group at the end (uniform when no bandit)
    selections: pl.DataFrame  #: per decision day and group: regime, selected
    weights: np.ndarray  #: [days, S] weights held on each earned day (after the fill)


def day_returns(close: np.ndarray, open_: np.ndarray, t: int, execution: str) -> tuple[np.ndarray, np.ndarray]:
    """(gap, session) simple returns of day t+1 per column: close t -> open t+1 and open t+1 -> close t+1
    (``close`` execution: gap 0, session = close-to-close). A missing bar earns 0 (the position is frozen)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = close[t + 1] / close[t] - 1.0
        if execution == "close":
            g = np.zeros_like(r)
            i = r
        else:
            g = open_[t + 1] / close[t] - 1.0
            i = close[t + 1] / open_[t + 1] - 1.0
            miss = ~np.isfinite(g) | ~np.isfinite(i)
            g = np.where(miss, 0.0, g)
            i = np.where(miss, r, i)
    return np.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0), np.nan_to_num(i, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class DayFill:
    net: float
    gross: float
    cost: float
    borrow: float
    turnover: float
    w_open: np.ndarray
    w_new: np.ndarray
    w_after: np.ndarray
    pnl: np.ndarray  #: per-name contribution (additive approximation of net, for trade P&L / attribution)
    traded: np.ndarray


def fill_day(w_old: np.ndarray, target: np.ndarray | None, g: np.ndarray, i: np.ndarray, cost_rate: float,
             borrow_rate: float, band: float = 0.0) -> DayFill:
    """One earned day: drift overnight, trade to ``target`` (None = hold) at the fill, earn the session."""
    eq_on = 1.0 + float(w_old @ g)
    w_open = w_old * (1.0 + g) / eq_on
    if target is None:
        w_new = w_open
    else:
        move = (np.abs(target - w_open) > band) | (np.sign(target) != np.sign(w_open))
        w_new = np.where(move, target, w_open)
    traded = np.abs(w_new - w_open)
    cost = cost_rate * float(traded.sum())
    shorts = np.maximum(-w_new, 0.0)
    borrow = borrow_rate / 252.0 * float(shorts.sum())
    session = 1.0 + float(w_new @ i)
    net = eq_on * (1.0 - cost - borrow) * session - 1.0
    gross = eq_on * (1.0 - borrow) * session - 1.0
    pnl = w_old * g + w_new * i - cost_rate * traded - borrow_rate / 252.0 * shorts
    return DayFill(net, gross, gross - net, borrow, float(traded.sum()), w_open, w_new, w_new * (1.0 + i) / session,
                   pnl, traded)


def book_targets(market: BookMarket, t: int, selected: list[int], config: SectorBookConfig
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Target weights at the close of t for the ``selected`` groups, and each name's sleeve index (the
    sleeve with the largest contribution; -1 = none), after the per-name cap and the names cap."""
    s = len(market.tickers)
    parts = np.zeros((len(SLEEVES), s))
    mom = momentum(market.close, t, config.momentum_lookback)
    cap = 1.0 / max(config.groups_per_day, len(selected)) if selected else 0.0
    for g in selected:
        regime = market.regime[t, g]
        members = market.members[g]
        if regime == BULL:
            picks = bull_picks(mom, members, config.bull_n)
            parts[0, picks] += cap / config.bull_n
        elif regime == BEAR and not config.long_only:
            picks = bear_picks(mom, members, config.bear_n)
            parts[1, picks] -= cap / config.bear_n
        elif regime == SIDEWAYS and not config.long_only and market.pair_position is not None:
            idx = np.flatnonzero(market.pair_group == g)
            if idx.size:
                pos = np.nan_to_num(market.pair_position[t, idx], nan=0.0)
                each = cap / idx.size
                np.add.at(parts[2], market.pair_a[idx], pos * each * market.pair_w_a[idx])
                np.add.at(parts[2], market.pair_b[idx], pos * each * market.pair_w_b[idx])
    target = np.clip(parts.sum(axis=0), -config.max_weight, config.max_weight)
    target[~np.isfinite(market.close[t])] = 0.0
    held = np.flatnonzero(np.abs(target) > 1e-12)
    if held.size > config.max_positions:
        keep = held[np.argsort(-np.abs(target[held]), kind="stable")[:config.max_positions]]
        mask = np.zeros(s, dtype=bool)
        mask[keep] = True
        target[~mask] = 0.0
    sleeve = np.where(np.abs(parts).max(axis=0) > 0, np.abs(parts).argmax(axis=0), -1)
    return target, sleeve


def _date(d) -> object:
    return np.datetime64(d, "D").astype(object)


def run_book(market: BookMarket, lo: int, hi: int, config: SectorBookConfig | None = None,
             strategy: str = "sector_book") -> BookResult:
    """Run the book over the earned days ``lo .. hi-1`` of ``market.dates`` (decisions at ``lo-1 .. hi-2``)."""
    cfg = config or SectorBookConfig()
    if lo < 1 or hi > len(market.dates) or hi <= lo:
        raise ValueError(f"earned days [{lo}, {hi}) need a decision day before them inside the {len(market.dates)} dates")
    s = len(market.tickers)
    bandit = ThompsonBandit(market.groups, seed=cfg.seed)
    group_of = market.group_of()
    w = np.zeros(s)
    equity = 1.0
    rows, trades, selections, held_w = [], [], [], []
    open_trade: dict[int, dict] = {}
    for e in range(lo, hi):
        t = e - 1
        has_regime = [g for g in range(len(market.groups)) if market.regime[t, g] >= 0]
        names = [market.groups[g] for g in has_regime]
        if cfg.use_bandit:
            chosen = bandit.select(cfg.groups_per_day, names) if names else []
            selected = [market.groups.index(n) for n in chosen]
        else:
            selected = has_regime
        for g in has_regime:
            selections.append((_date(market.dates[t]), market.groups[g], REGIMES[market.regime[t, g]], g in selected))
        target, sleeve = book_targets(market, t, selected, cfg)
        gap, session = day_returns(market.close, market.open_, t, cfg.execution)
        fill = fill_day(w, target, gap, session, cfg.cost_rate, cfg.borrow_rate, cfg.rebalance_band)
        old_sign, new_sign = np.sign(w), np.sign(fill.w_new)
        closed_today = []
        for j in np.flatnonzero((old_sign != 0) | (new_sign != 0)):
            if old_sign[j] != 0 and new_sign[j] != old_sign[j]:  # closes (or flips): overnight + exit cost
                tr = open_trade.pop(j)
                tr["pnl"] += w[j] * gap[j] - cfg.cost_rate * abs(fill.w_open[j])
                tr["exit_date"] = _date(market.dates[t])
                trades.append(tr)
                closed_today.append(tr)
                if new_sign[j] != 0:  # a flip opens the other side: its entry cost, session and borrow
                    open_trade[j] = _new_trade(market, j, group_of[j], sleeve[j], new_sign[j], t)
                    open_trade[j]["pnl"] += (fill.w_new[j] * session[j] - cfg.cost_rate * abs(fill.w_new[j])
                                             - cfg.borrow_rate / 252.0 * max(-fill.w_new[j], 0.0))
                    open_trade[j]["days"] += 1
                continue
            if old_sign[j] == 0:
                open_trade[j] = _new_trade(market, j, group_of[j], sleeve[j], new_sign[j], t)
            open_trade[j]["pnl"] += fill.pnl[j]
            open_trade[j]["days"] += 1
        if cfg.use_bandit:  # P&L of trades closed by this fill is known at the close of e
            for tr in closed_today:
                if tr["group"] is not None:
                    bandit.update(tr["group"], tr["pnl"])
        equity *= 1.0 + fill.net
        rows.append((_date(market.dates[e]), fill.net, fill.gross, fill.turnover, fill.cost, fill.borrow, equity,
                     float(np.maximum(fill.w_new, 0).sum()), float(np.maximum(-fill.w_new, 0).sum()),
                     int((fill.w_new != 0).sum()), len(selected)))
        held_w.append(fill.w_new)
        w = fill.w_after
    for tr in open_trade.values():  # still open at the window's end: marked, not closed
        trades.append({**tr, "exit_date": None})
    daily = pl.DataFrame(rows, schema={"date": pl.Date, "net_return": pl.Float64, "gross_return": pl.Float64,
                                       "turnover": pl.Float64, "cost": pl.Float64, "borrow": pl.Float64,
                                       "equity": pl.Float64, "long_exposure": pl.Float64,
                                       "short_exposure": pl.Float64, "positions": pl.Int64, "groups": pl.Int64},
                         orient="row").with_columns(pl.lit(strategy).alias("strategy"))
    return BookResult(daily.select("strategy", pl.exclude("strategy")), _trade_frame(trades, strategy),
                      bandit.posterior().with_columns(pl.lit(strategy).alias("strategy")),
                      pl.DataFrame(selections, schema={"date": pl.Date, "group": pl.Utf8, "regime": pl.Utf8,
                                                       "selected": pl.Boolean}, orient="row"),
                      np.array(held_w))


def _new_trade(market: BookMarket, j: int, g: int, sleeve: int, sign: float, t: int) -> dict:
    return {"ticker": market.tickers[j], "group": market.groups[g] if g >= 0 else None,
            "sleeve": SLEEVES[sleeve] if sleeve >= 0 else None, "side": "long" if sign > 0 else "short",
            "entry_date": _date(market.dates[t]), "pnl": 0.0, "days": 0}


TRADE_SCHEMA = {"strategy": pl.Utf8, "ticker": pl.Utf8, "group": pl.Utf8, "sleeve": pl.Utf8, "side": pl.Utf8,
                "entry_date": pl.Date, "exit_date": pl.Date, "pnl": pl.Float64, "holding_days": pl.Int64,
                "closed": pl.Boolean}


def _trade_frame(trades: list[dict], strategy: str) -> pl.DataFrame:
    rows = [(strategy, tr["ticker"], tr["group"], tr["sleeve"], tr["side"], tr["entry_date"], tr["exit_date"],
             tr["pnl"], tr["days"], tr["exit_date"] is not None) for tr in trades]
    return pl.DataFrame(rows, schema=TRADE_SCHEMA, orient="row").sort("entry_date", "ticker")


def trade_statistics(trades: pl.DataFrame) -> dict[str, float | int | None]:
    """Closed trades: count, win rate, average win / loss (fractions of equity), profit factor (gross wins /
    gross losses), average holding period (earned sessions)."""
    closed = trades.filter(pl.col("closed"))
    pnl = closed["pnl"].to_numpy()
    wins, losses = pnl[pnl > 0], pnl[pnl <= 0]
    loss_sum = -losses.sum()
    return {
        "trades": int(pnl.size),
        "win_rate": float(wins.size / pnl.size) if pnl.size else None,
        "avg_win": float(wins.mean()) if wins.size else None,
        "avg_loss": float(losses.mean()) if losses.size else None,
        "profit_factor": float(wins.sum() / loss_sum) if loss_sum > 0 else None,
        "avg_hold_days": float(closed["holding_days"].mean()) if pnl.size else None,
    }


def run_benchmark(market: BookMarket, lo: int, hi: int, column_weights, config: SectorBookConfig,
                  rebalance_days: np.ndarray, strategy: str) -> pl.DataFrame:
    """A long-only comparison through the same accounting: ``column_weights(t) -> target`` on the decision
    days where ``rebalance_days[t]`` (e.g. the first session of each month), drifting in between."""
    w = np.zeros(len(market.tickers))
    equity = 1.0
    rows = []
    for e in range(lo, hi):
        t = e - 1
        target = column_weights(t) if (rebalance_days[t] or e == lo) else None
        gap, session = day_returns(market.close, market.open_, t, config.execution)
        fill = fill_day(w, target, gap, session, config.cost_rate, config.borrow_rate)
        equity *= 1.0 + fill.net
        rows.append((_date(market.dates[e]), fill.net, fill.gross, fill.turnover, fill.cost, fill.borrow, equity,
                     float(fill.w_new.sum()), 0.0, int((fill.w_new != 0).sum()), 0))
        w = fill.w_after
    return pl.DataFrame(rows, schema={"date": pl.Date, "net_return": pl.Float64, "gross_return": pl.Float64,
                                      "turnover": pl.Float64, "cost": pl.Float64, "borrow": pl.Float64,
                                      "equity": pl.Float64, "long_exposure": pl.Float64,
                                      "short_exposure": pl.Float64, "positions": pl.Int64, "groups": pl.Int64},
                        orient="row").with_columns(pl.lit(strategy).alias("strategy")).select(
        "strategy", pl.exclude("strategy"))


def month_starts(dates: np.ndarray) -> np.ndarray:
    """True on the first session of each calendar month (decision days of a monthly rebalance)."""
    m = np.asarray(dates).astype("datetime64[M]")
    out = np.ones(m.size, dtype=bool)
    out[1:] = m[1:] != m[:-1]
    return out
