"""The sector-regime book for one fold and over the walk-forward track: inputs assembled from frames, the
book's variants and comparisons run over the test window, metrics and trade statistics.

Variants (all over the same earned days, costs and timing; :mod:`ml.backtest.sector_book`):

* ``sector_book``: sideways groups trade pairs with the QR-DQN policy, the bandit picks 5 groups a day;
* ``sector_book_zscore``: the same with the z-score rule (entry |z| > 2, exit |z| < 0.5) for the pairs;
* ``sector_book_all_groups``: QR-DQN pairs, no bandit (every group with a regime, capital split evenly);
* ``sector_book_long_only``: QR-DQN book, bandit, no shorts (bear and pair capital stays in cash);
* comparisons: ``spy_buy_hold`` and ``ew_stocks`` (equal weight over the book's stocks - the members of its
  groups - with a bar, rebalanced on the first session of each month), long-only, through the same accounting.

When the fold's QR-DQN model is missing or unreadable the QR-DQN variants fall back to the z-score rule
(``pair_policy = "zscore (fallback)"`` in the metrics; logged by the caller).

Survivorship bias: the real snapshot's stocks are today's 100 large caps; every stock-book result on it
is biased upwards (names that fell out of the index are absent), see :data:`SURVIVORSHIP_NOTE`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ml import metrics
from ml.backtest.sector_book import (
    BookMarket,
    SectorBookConfig,
    month_starts,
    run_benchmark,
    run_book,
    trade_statistics,
)
from ml.strategies.pairs import PairsConfig, state_arrays, zscore_positions
from ml.strategies.sector_regime import REGIMES, Undersized, group_regimes, stock_groups

SURVIVORSHIP_NOTE = ("Survivorship bias: the stock universe is today's 100 S&P 500 large caps with today's GICS "
                     "labels, so every stock-book result on it (and the equal-weight stock basket) is biased upwards; "
                     "names that left the index are missing.")
BOOK_VARIANTS = ("sector_book", "sector_book_zscore", "sector_book_all_groups", "sector_book_long_only")
COMPARISONS = ("spy_buy_hold", "ew_stocks")
BENCHMARKS = ("spy_buy_hold", "ew_stocks")
#: The design's published backtest (2025-03-15 .. 2025-12-15), next to ours in the report.
PUBLISHED = {"window": (date(2025, 3, 15), date(2025, 12, 15)),
             "sector_book": {"sharpe": 1.97, "total_return": 0.208, "max_drawdown": -0.0493, "win_rate": 0.561,
                             "profit_factor": 1.82, "trades": 1847, "avg_hold_days": 3.2},
             "pairs_qrdqn": {"total_return": 0.0812, "sharpe": 1.12, "max_drawdown": -0.0721},
             "spy_claimed_total_return": 0.0}
HISTORY_SESSIONS = 40  # market rows kept before the test window (momentum needs 20)


class SectorBookSettings(BaseModel):
    """Everything the book's fold evaluation needs besides data (defaults: the reference design)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    book: SectorBookConfig = SectorBookConfig()
    pairs: PairsConfig = PairsConfig()
    min_group_size: int = Field(default=4, ge=2)
    undersized: Undersized = "skip"


def universe_groups(bars: pl.DataFrame, sectors: pl.DataFrame, settings: SectorBookSettings) -> pl.DataFrame:
    """The book's stock groups (``group, ticker, sector``) among the tickers of ``bars``."""
    return stock_groups(sectors, set(bars["ticker"].unique()), settings.min_group_size, settings.undersized)


def wide_column(frame: pl.DataFrame, dates: pl.Series, tickers: list[str], column: str) -> np.ndarray:
    """``column`` of a long ``ticker, date`` frame as ``[dates, tickers]`` floats (NaN where a row is missing)."""
    if not tickers:
        return np.zeros((len(dates), 0))
    wide = (frame.filter(pl.col("ticker").is_in(tickers)).select("date", "ticker", pl.col(column).cast(pl.Float64))
            .pivot(on="ticker", index="date", values=column))
    out = pl.DataFrame({"date": dates}).join(wide, on="date", how="left")
    for t in tickers:
        if t not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(t))
    return out.select(tickers).to_numpy().astype(float)


def build_market(bars: pl.DataFrame, groups: pl.DataFrame, regimes: pl.DataFrame, pairs: pl.DataFrame,
                 start: date, end: date, calendar_ticker: str = "SPY") -> BookMarket:
    """Arrays of the book on the ``calendar_ticker`` sessions in [start, end]: the groups' stocks, then
    ``calendar_ticker`` itself (last column, the SPY comparison; never a member), regimes (from
    :func:`ml.strategies.sector_regime.group_regimes`) and the pairs' legs. Pair positions are set later."""
    dates = (bars.filter((pl.col("ticker") == calendar_ticker) & pl.col("date").is_between(start, end))
             .get_column("date").unique().sort())
    stocks = groups["ticker"].unique().sort().to_list()
    tickers = [*stocks, calendar_ticker]
    col = {t: i for i, t in enumerate(tickers)}
    names = groups["group"].unique().sort().to_list()
    members = [np.array([col[t] for t in groups.filter(pl.col("group") == g)["ticker"]], dtype=np.int64)
               for g in names]
    reg = (pl.DataFrame({"date": dates}).join(
        regimes.select("date", "group", pl.col("regime").replace_strict(
            {r: i for i, r in enumerate(REGIMES)}, return_dtype=pl.Int64)).pivot(on="group", index="date",
                                                                                 values="regime"),
        on="date", how="left"))
    regime = np.stack([reg[g].fill_null(-1).to_numpy() if g in reg.columns else np.full(len(dates), -1)
                       for g in names], axis=1) if names else np.zeros((len(dates), 0), dtype=np.int64)
    gi = {g: i for i, g in enumerate(names)}
    b = pairs["hedge_ratio"].to_numpy().astype(float) if pairs.height else np.zeros(0)
    return BookMarket(
        dates=dates.to_numpy(), tickers=tickers,
        close=wide_column(bars, dates, tickers, "close"), open_=wide_column(bars, dates, tickers, "open"),
        groups=names, members=members, regime=regime.astype(np.int64),
        pair_group=np.array([gi.get(g, -1) for g in pairs["group"]], dtype=np.int64) if pairs.height else np.zeros(0, np.int64),
        pair_a=np.array([col[t] for t in pairs["ticker_a"]], dtype=np.int64) if pairs.height else np.zeros(0, np.int64),
        pair_b=np.array([col[t] for t in pairs["ticker_b"]], dtype=np.int64) if pairs.height else np.zeros(0, np.int64),
        pair_w_a=1.0 / (1.0 + np.abs(b)), pair_w_b=-b / (1.0 + np.abs(b)),
    )


def align_pairs(market: BookMarket, states: pl.DataFrame, pairs: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The pairs' state arrays ``[T, P, F]`` and z-scores ``[T, P]`` on the market's date axis (NaN where
    a pair has no state)."""
    dates, x, _, z = state_arrays(states, pairs)
    pos = {d: i for i, d in enumerate(np.asarray(dates).astype("datetime64[D]"))}
    idx = np.array([pos.get(d, -1) for d in market.dates.astype("datetime64[D]")])
    ok = idx >= 0
    xs = np.full((len(market.dates), *x.shape[1:]), np.nan)
    zs = np.full((len(market.dates), z.shape[1]), np.nan)
    xs[ok], zs[ok] = x[idx[ok]], z[idx[ok]]
    return xs, zs


def qrdqn_positions(policy: Any, states: np.ndarray, start: int) -> np.ndarray:
    """The QR-DQN pair policy's signed sizes ``[T, P]`` for decisions from row ``start`` on, run through time
    from flat (each pair's own position and days held feed its next observation); NaN before ``start``."""
    t_n, p_n = states.shape[:2]
    out = np.full((t_n, p_n), np.nan)
    pos = np.zeros(p_n)
    held = np.zeros(p_n)
    for t in range(start, t_n):
        ok = np.isfinite(states[t]).all(axis=1)
        size = np.zeros(p_n)
        if ok.any():
            size[ok] = np.asarray(policy.positions(states[t][ok], np.sign(pos[ok]), held[ok]), dtype=float)
        held = np.where((np.sign(size) == np.sign(pos)) & (size != 0), held + 1, np.where(size != 0, 1, 0))
        pos = size
        out[t] = size
    return out


@dataclass
class FoldBook:
    daily: pl.DataFrame
    trades: pl.DataFrame
    posterior: pl.DataFrame
    selections: pl.DataFrame
    metrics: pl.DataFrame
    pair_policy: str


def run_fold_book(bars: pl.DataFrame, groups: pl.DataFrame, sector_probs: pl.DataFrame, pairs: pl.DataFrame,
                  states: pl.DataFrame, policy: Any | None, test_start: date, test_end: date,
                  settings: SectorBookSettings | None = None) -> FoldBook:
    """Every variant and comparison over the earned days ``test_start .. test_end`` (decisions from the
    session before ``test_start``). ``policy`` None = the z-score fallback for the QR-DQN variants."""
    cfg = settings or SectorBookSettings()
    first = bars.filter((pl.col("ticker") == "SPY") & (pl.col("date") < test_start))["date"].sort()
    start = first[-HISTORY_SESSIONS] if first.len() >= HISTORY_SESSIONS else first.min()
    regimes = group_regimes(groups, sector_probs)
    members = set(groups["ticker"])
    if pairs.height:  # pairs chosen at the train end whose group or legs are not in the book's groups now
        pairs = pairs.filter(pl.col("group").is_in(groups["group"].unique().to_list())
                             & pl.col("ticker_a").is_in(list(members)) & pl.col("ticker_b").is_in(list(members)))
    market = build_market(bars, groups, regimes, pairs, start, test_end)
    d = market.dates.astype("datetime64[D]")
    lo = int(np.searchsorted(d, np.datetime64(test_start, "D")))
    hi = len(d)
    if lo < 1 or lo >= hi:
        raise ValueError(f"no earned day in {test_start} .. {test_end} with a decision day before it")
    x, z = align_pairs(market, states, pairs) if pairs.height else (np.zeros((hi, 0, 0)), np.zeros((hi, 0)))
    zpos = zscore_positions(z, cfg.pairs).astype(float) if pairs.height else np.zeros((hi, 0))
    qpos = qrdqn_positions(policy, x, lo - 1) if (policy is not None and pairs.height) else zpos
    pair_policy = "qrdqn" if policy is not None else "zscore (fallback)"
    runs = []
    for name in BOOK_VARIANTS:
        book = cfg.book
        if name == "sector_book_all_groups":
            book = book.model_copy(update={"use_bandit": False})
        elif name == "sector_book_long_only":
            book = book.model_copy(update={"long_only": True})
        market.pair_position = zpos if name == "sector_book_zscore" else qpos
        runs.append(run_book(market, lo, hi, book, strategy=name))
    spy = len(market.tickers) - 1
    stocks = np.concatenate(market.members) if market.members else np.zeros(0, np.int64)

    def spy_weights(t: int) -> np.ndarray:
        w = np.zeros(len(market.tickers))
        w[spy] = 1.0
        return w

    def ew_weights(t: int) -> np.ndarray:
        w = np.zeros(len(market.tickers))
        ok = stocks[np.isfinite(market.close[t, stocks])]
        w[ok] = 1.0 / max(ok.size, 1)
        return w

    never = np.zeros(hi, dtype=bool)
    comps = [run_benchmark(market, lo, hi, spy_weights, cfg.book, never, "spy_buy_hold"),
             run_benchmark(market, lo, hi, ew_weights, cfg.book, month_starts(market.dates), "ew_stocks")]
    daily = pl.concat([*(r.daily for r in runs), *comps])
    trades = pl.concat([r.trades for r in runs])
    return FoldBook(daily=daily, trades=trades, posterior=pl.concat([r.posterior for r in runs]),
                    selections=runs[0].selections, metrics=book_metrics(daily, trades).with_columns(
                        pl.lit(pair_policy).alias("pair_policy")), pair_policy=pair_policy)


def book_metrics(daily: pl.DataFrame, trades: pl.DataFrame, cost_multipliers=(1.0, 2.0, 3.0),
                 seed: int = 0, variants: tuple[str, ...] = BOOK_VARIANTS,
                 benchmarks: tuple[str, ...] = BENCHMARKS) -> pl.DataFrame:
    """``ml.metrics.metrics_table`` per strategy at each cost multiplier (net = gross - m x cost; Sharpe CIs by
    the stationary bootstrap, differences vs ``benchmarks``: SPY and the equal-weight stocks) plus the
    closed-trade statistics of each book variant in ``variants`` (null for the comparisons)."""
    names = daily["strategy"].unique(maintain_order=True).to_list()
    stats = {s: trade_statistics(trades.filter(pl.col("strategy") == s)) for s in names if s in variants}
    tables = []
    for mult in cost_multipliers:
        t = daily.with_columns((pl.col("gross_return") - mult * pl.col("cost")).alias("net_return"))
        series = {s: t.filter(pl.col("strategy") == s).sort("date") for s in names}
        dates = series[names[0]]["date"].to_numpy()
        table = metrics.metrics_table({s: f["net_return"].to_numpy() for s, f in series.items()}, dates,
                                      {s: f["turnover"].to_numpy() for s, f in series.items()},
                                      benchmark_names=[b for b in benchmarks if b in names], seed=seed)
        extra = pl.DataFrame([{"strategy": s, "cost_drag": float((mult * series[s]["cost"]).sum()),
                               "avg_gross_exposure": float((series[s]["long_exposure"] + series[s]["short_exposure"]).mean()),
                               **stats.get(s, {k: None for k in ("trades", "win_rate", "avg_win", "avg_loss",
                                                                 "profit_factor", "avg_hold_days")})}
                              for s in names],
                             schema={"strategy": pl.Utf8, "cost_drag": pl.Float64, "avg_gross_exposure": pl.Float64,
                                     "trades": pl.Int64, "win_rate": pl.Float64, "avg_win": pl.Float64,
                                     "avg_loss": pl.Float64, "profit_factor": pl.Float64, "avg_hold_days": pl.Float64})
        tables.append(table.join(extra, on="strategy").with_columns(pl.lit(float(mult)).alias("cost_multiplier")))
    return pl.concat(tables)


def window_metrics(daily: pl.DataFrame, trades: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """:func:`book_metrics` at 1x costs restricted to earned days and trade entries in [start, end]."""
    d = daily.filter(pl.col("date").is_between(start, end))
    tr = trades.filter(pl.col("entry_date").is_between(start, end))
    return book_metrics(d, tr, cost_multipliers=(1.0,))
