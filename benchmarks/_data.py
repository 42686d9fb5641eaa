"""Private data helpers for feature tests and benchmarks (not part of the pipeline).

* :func:`load_real_bars` / :func:`load_real_index_bars`: the shared real snapshot
  (``$REGIMEFLOW_TEST_DATA_DIR`` or ``<repo>/../shared/data/market``), read by the CSV source,
  or ``None`` when it is absent. Data is read in place, never copied into the project.
* :func:`synthetic_bars` / :func:`synthetic_index_bars`: seeded random-walk OHLCV and VIX-like
  index bars on a weekday calendar with a few "holidays" (VIX keeps CBOE-style holiday rows).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ml.data.market import BARS_SCHEMA, INDEX_BARS_SCHEMA

_REPO = Path(__file__).resolve().parents[1]


def market_dir() -> Path | None:
    """The real snapshot: ``$REGIMEFLOW_TEST_DATA_DIR`` or ``<repo>/../shared/data/market``; None if absent."""
    root = Path(os.environ.get("REGIMEFLOW_TEST_DATA_DIR", _REPO.parent / "shared" / "data" / "market"))
    return root if (root / "ohlcv").is_dir() and (root / "index").is_dir() else None


def _load_real(tickers: Sequence[str] | None, root: Path | None):
    """Full-history load through the project's own CSV source (None when the snapshot is absent)."""
    from ml.data.csv_source import CsvMarketSource
    from ml.data.universe import Universe

    root = root or market_dir()
    if root is None:
        return None
    universe = (Universe(history_start=None) if tickers is None else
                Universe(allocation=[], sector_etfs=[], stocks=list(tickers), history_start=None))
    return CsvMarketSource(root).load(universe, on_progress=lambda _: None)


def load_real_bars(tickers: Sequence[str] | None = None, root: Path | None = None) -> pl.DataFrame | None:
    market = _load_real(tickers, root)
    return None if market is None else market.bars


def load_real_index_bars(root: Path | None = None) -> pl.DataFrame | None:
    market = _load_real(["SPY"], root)
    return None if market is None else market.index_bars


def weekday_calendar(
    n_days: int, start: date = date(2000, 1, 3), holiday_every: int = 47
) -> tuple[list[date], list[date]]:
    """``n_days`` trading days (weekdays minus every ``holiday_every``-th weekday) and the holidays."""
    days: list[date] = []
    holidays: list[date] = []
    d = start
    k = 0
    while len(days) < n_days:
        if d.weekday() < 5:
            k += 1
            (holidays if holiday_every and k % holiday_every == 0 else days).append(d)
        d += timedelta(days=1)
    return days, holidays


def synthetic_bars(
    n_tickers: int = 5,
    n_days: int = 600,
    seed: int = 0,
    *,
    market_ticker: str | None = "SPY",
    ragged: bool = True,
    start: date = date(2000, 1, 3),
) -> pl.DataFrame:
    """Random-walk OHLCV bars in BARS_SCHEMA. With ``ragged`` tickers start/end at different rows."""
    rng = np.random.default_rng(seed)
    days, _ = weekday_calendar(n_days, start)
    cal = np.array(days, dtype="datetime64[D]")
    n_other = n_tickers - (1 if market_ticker else 0)
    names = ([market_ticker] if market_ticker else []) + [f"T{i:04d}" for i in range(n_other)]
    n = len(cal)
    starts = np.zeros(len(names), dtype=np.int64)
    ends = np.full(len(names), n, dtype=np.int64)
    if ragged and n > 50:
        starts[1:] = rng.integers(0, n // 4, len(names) - 1)
        ends[1:] = n - rng.integers(0, n // 10, len(names) - 1)
        ends = np.maximum(ends, starts + 10)
    lens = ends - starts
    total = int(lens.sum())
    tick = np.repeat(np.arange(len(names)), lens)
    idx = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
    first = np.zeros(total, dtype=bool)
    first[np.concatenate([[0], np.cumsum(lens)[:-1]])] = True
    mkt = rng.normal(0.0003, 0.011, n)
    beta = rng.uniform(0.5, 1.5, len(names))
    beta[0] = 1.0
    eps = rng.normal(0.0, 0.012, total)
    eps[tick == 0] = 0.0
    r = beta[tick] * mkt[idx] + eps
    r[first] = 0.0
    level = np.exp(rng.uniform(1.0, 6.0, len(names)))[tick]
    # cumulative log price per ticker
    cs = np.cumsum(r)
    base = np.repeat(cs[np.cumsum(lens) - lens], lens)
    close = level * np.exp(cs - base)
    gap = rng.normal(0.0, 0.004, total)
    prev = np.where(first, close, np.roll(close, 1))
    open_ = prev * np.exp(gap)
    hi = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, total)))
    lo = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, total)))
    vol = np.round(np.exp(rng.normal(14.0, 0.5, total)))
    df = pl.DataFrame(
        {
            "ticker": np.array(names)[tick],
            "date": cal[idx],
            "open": open_,
            "high": hi,
            "low": lo,
            "close": close,
            "adj_close": close,
            "volume": vol,
        }
    )
    return df.select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()]).sort("ticker", "date")


def synthetic_index_bars(
    n_days: int = 600,
    seed: int = 1,
    *,
    start: date = date(2000, 1, 3),
    vix3m_start_row: int = 100,
    holiday_rows: bool = True,
) -> pl.DataFrame:
    """VIX (mean-reverting, positive) and VIX3M index bars on the synthetic calendar.

    VIX also has rows on the calendar's holidays (like CBOE); VIX3M starts at ``vix3m_start_row``.
    """
    rng = np.random.default_rng(seed)
    days, holidays = weekday_calendar(n_days, start)
    all_days = sorted(days + holidays) if holiday_rows else days
    hol = set(holidays)
    x = np.empty(len(all_days))
    x[0] = np.log(18.0)
    for i in range(1, len(all_days)):
        x[i] = x[i - 1] + 0.05 * (np.log(18.0) - x[i - 1]) + rng.normal(0.0, 0.07)
    vix = np.exp(x)
    vix3m = vix * np.exp(0.08 + rng.normal(0.0, 0.03, len(all_days)))
    rows = []
    trading_i = 0
    for d, v, v3 in zip(all_days, vix, vix3m):
        rows.append(("VIX", d, v, v * 1.05, v * 0.95, v))
        if d not in hol:
            if trading_i >= vix3m_start_row:
                rows.append(("VIX3M", d, v3, v3 * 1.03, v3 * 0.97, v3))
            trading_i += 1
    df = pl.DataFrame(rows, schema=["symbol", "date", "open", "high", "low", "close"], orient="row")
    return df.select([pl.col(c).cast(t) for c, t in INDEX_BARS_SCHEMA.items()]).sort("symbol", "date")
