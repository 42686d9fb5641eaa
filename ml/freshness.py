"""Per-input freshness: how many reference sessions each ticker / index series is behind.

Known at the close of the newest reference session T. An input whose newest row is dated L is
``sessions_behind`` = the number of reference sessions in (L, T]; it is **stale** when that exceeds
``max_lag_sessions`` (default 0: every input must have T's row). Reference sessions = the trading
calendar (the reference ticker's sessions) plus any date on which at least half of the tickers have a
bar, so a reference ticker that stops updating is flagged too instead of silently freezing the calendar.

Roles decide what staleness does: the allocation assets and the VIX feed the decision (a stale one
blocks it); sector ETFs, stocks and the other index series are context (a stale one warns, and live
outputs derived from it stop at its last row, with that as-of date recorded).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import polars as pl

ROLES = ("allocation", "index", "sector", "stock")
FRESHNESS_SCHEMA = {
    "input": pl.Utf8, "role": pl.Utf8, "last_date": pl.Date, "reference_date": pl.Date,
    "sessions_behind": pl.Int64, "stale": pl.Boolean, "blocks_decision": pl.Boolean,
}


def last_rows(bars: pl.DataFrame, index_bars: pl.DataFrame | None = None) -> pl.DataFrame:
    """``input, last_date``: each ticker's newest bar and each index symbol's newest non-null close."""
    parts = [bars.group_by("ticker").agg(pl.col("date").max().alias("last_date")).rename({"ticker": "input"})]
    if index_bars is not None and index_bars.height:
        rows = index_bars.filter(pl.col("close").is_not_null()) if "close" in index_bars.columns else index_bars
        parts.append(rows.group_by("symbol").agg(pl.col("date").max().alias("last_date")).rename({"symbol": "input"}))
    return pl.concat([p.select("input", pl.col("last_date").cast(pl.Date)) for p in parts]).sort("input")


def reference_sessions(calendar: Iterable[date] | pl.Series, bars: pl.DataFrame) -> pl.Series:
    """The calendar's sessions plus every date on which at least half of the tickers in ``bars`` have a bar."""
    n = max(bars["ticker"].n_unique(), 1)
    busy = bars.group_by("date").agg(pl.col("ticker").n_unique().alias("n")).filter(pl.col("n") * 2 >= n)["date"]
    cal = pl.Series("date", list(calendar), dtype=pl.Date)
    return pl.concat([cal, busy.cast(pl.Date)]).unique().sort()


def input_freshness(
    last: pl.DataFrame,
    sessions: pl.Series,
    roles: Mapping[str, str],
    blocking: Iterable[str],
    max_lag_sessions: int = 0,
) -> pl.DataFrame:
    """One row per input of ``last`` (:func:`last_rows`), in :data:`FRESHNESS_SCHEMA`, stale first.

    ``roles``: input -> one of :data:`ROLES` (default ``stock``); ``blocking``: inputs whose staleness
    blocks the decision."""
    if sessions.is_empty() or last.is_empty():
        return pl.DataFrame(schema=FRESHNESS_SCHEMA)
    ref = sessions.sort()
    newest = ref[-1]
    blocking = set(blocking)
    behind = [int((ref > d).sum()) if d is not None else len(ref) for d in last["last_date"]]
    frame = last.with_columns(
        pl.col("input").replace_strict(dict(roles), default="stock").alias("role"),
        pl.lit(newest, dtype=pl.Date).alias("reference_date"),
        pl.Series("sessions_behind", behind, dtype=pl.Int64),
    ).with_columns((pl.col("sessions_behind") > max_lag_sessions).alias("stale"))
    frame = frame.with_columns((pl.col("stale") & pl.col("input").is_in(list(blocking))).alias("blocks_decision"))
    return frame.select(list(FRESHNESS_SCHEMA)).sort("stale", "sessions_behind", "input",
                                                     descending=[True, True, False])


def stale_lines(freshness: pl.DataFrame) -> list[str]:
    """Human lines for the stale inputs: ``XLK (sector): last bar 2026-02-27, 67 sessions behind 2026-06-04``."""
    return [f"{r['input']} ({r['role']}{', blocks the decision' if r['blocks_decision'] else ''}): last row "
            f"{r['last_date']}, {r['sessions_behind']} session(s) behind {r['reference_date']}"
            for r in freshness.filter(pl.col("stale")).iter_rows(named=True)]


def as_of_dates(freshness: pl.DataFrame, inputs: Iterable[str] | None = None) -> dict[str, str]:
    """``{input: ISO last date}`` of ``inputs`` (all when None), for the decision log."""
    rows = freshness if inputs is None else freshness.filter(pl.col("input").is_in(list(inputs)))
    return {r["input"]: r["last_date"].isoformat() for r in rows.sort("input").iter_rows(named=True)
            if r["last_date"] is not None}
