"""Canonical in-memory market data: the contract between sources, the warehouse and features.

Timing convention: a bar dated t holds the open/high/low/close/volume of the US session of day t;
everything in it is known at the close of t (16:00 ET). Index bars (VIX, VIX3M) close at 16:15 ET,
15 minutes after the equity close; features decide how to lag them.

Prices are split- and dividend-adjusted (Yahoo "auto_adjust"); ``adj_close`` equals ``close`` for
the shipped snapshot and is kept for sources that provide raw prices.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

#: Long OHLCV bars, one row per (ticker, date), sorted by ticker then date.
BARS_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8,
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "adj_close": pl.Float64,
    "volume": pl.Float64,
}

#: Index levels (index points, unadjusted), one row per (symbol, date). Symbols: "VIX", "VIX3M".
INDEX_BARS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8,
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
}

#: Reference data: one row per ticker with its GICS sector (sector ETFs map to the sector they track).
SECTORS_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8,
    "name": pl.Utf8,
    "gics_sector": pl.Utf8,
}

#: Source kinds recorded in every warehouse row. "csv" and "yahoo" are real data.
SOURCE_KINDS = ("csv", "yahoo", "synthetic")


class DataSourceError(ValueError):
    """Input data is malformed; the message names the file, line and problem."""


class SourceUnavailableError(RuntimeError):
    """A data source that was explicitly asked for cannot be reached (e.g. Yahoo while offline)."""


@dataclass(frozen=True)
class MarketData:
    """One load from a source: bars, index bars and sectors in the canonical schemas.

    ``source`` is one of SOURCE_KINDS; ``description`` says where the data came from
    (directory, seed, ...) and is shown in logs and reports.
    """

    bars: pl.DataFrame
    index_bars: pl.DataFrame
    sectors: pl.DataFrame
    source: str
    description: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.source not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {self.source!r}; expected one of {SOURCE_KINDS}")
        for name, frame, schema in (
            ("bars", self.bars, BARS_SCHEMA),
            ("index_bars", self.index_bars, INDEX_BARS_SCHEMA),
            ("sectors", self.sectors, SECTORS_SCHEMA),
        ):
            got = dict(frame.schema)
            if got != schema:
                raise ValueError(f"MarketData.{name} schema {got} != canonical {schema}")

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType], keys: list[str]) -> pl.DataFrame:
    """Select and cast ``frame`` to ``schema`` (column order included) and sort by ``keys``."""
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()]).sort(keys)


def trading_calendar_frame(bars: pl.DataFrame, reference_ticker: str) -> pl.DataFrame:
    """``ref.trading_calendar``: the dates observed for ``reference_ticker`` in ``bars`` with a 0-based
    ``session`` index (``date, session, reference_ticker, source``)."""
    ref = bars.filter(pl.col("ticker") == reference_ticker).sort("date")
    if ref.is_empty():
        raise ValueError(f"reference ticker {reference_ticker!r} has no bars; cannot build the trading calendar")
    source = ref.get_column("source") if "source" in ref.columns else pl.Series("source", ["unknown"] * ref.height)
    return pl.DataFrame({"date": ref.get_column("date"), "session": pl.int_range(ref.height, eager=True).cast(pl.Int32),
                         "reference_ticker": reference_ticker, "source": source})
