"""Yahoo Finance source (``yfinance``) for users who are online.

Returns the canonical frames of :mod:`ml.data.market`. Prices are ``auto_adjust`` (split- and
dividend-adjusted) dollars, so ``adj_close == close``; volume is shares; indices (``^VIX``,
``^VIX3M`` -> ``VIX``, ``VIX3M``) are index points. A bar dated t is the US session of day t, known
at its close. An explicit request for this source never falls back to another one: every failure
raises :class:`SourceUnavailableError`. ``yfinance`` is imported lazily (inside :meth:`load`).
"""
from __future__ import annotations

import socket
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from ml.data.market import (
    BARS_SCHEMA,
    INDEX_BARS_SCHEMA,
    SECTORS_SCHEMA,
    DataSourceError,
    MarketData,
    SourceUnavailableError,
    conform,
)
from ml.data.universe import SECTOR_ETFS, Universe

YAHOO_HOST = "query1.finance.yahoo.com"
YAHOO_PORT = 443
#: Canonical index symbol -> Yahoo symbol.
INDEX_SYMBOLS: dict[str, str] = {"VIX": "^VIX", "VIX3M": "^VIX3M"}
#: Start used when ``universe.history_start`` is None (before any ticker's first bar).
EARLIEST = date(1990, 1, 1)
_FIELDS = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}


def yahoo_symbol(ticker: str) -> str:
    """Yahoo spelling of a share-class ticker: ``BRK.B`` -> ``BRK-B`` (others unchanged)."""
    return ticker.replace(".", "-")


def read_sectors_file(path: Path) -> pl.DataFrame:
    """Read a ``ticker,name,gics_sector`` CSV into SECTORS_SCHEMA (raises DataSourceError)."""
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataSourceError(f"{path}: cannot read sectors file: {exc}") from exc
    missing = [c for c in SECTORS_SCHEMA if c not in frame.columns]
    if missing:
        raise DataSourceError(f"{path}: line 1: missing column(s) {missing}; expected {list(SECTORS_SCHEMA)}")
    return conform(frame, SECTORS_SCHEMA, ["ticker"])


def _long_frame(raw: Any, names: dict[str, str], with_volume: bool) -> tuple[pl.DataFrame, list[str]]:
    """Convert a ``yf.download(group_by="ticker")`` result to a long frame.

    ``names`` maps Yahoo symbol -> canonical name. Returns ``(frame, empty)`` where ``empty`` lists
    canonical names with no row holding a price. Rows whose prices are all NaN are dropped.
    """
    import pandas as pd

    frames, empty = [], []
    multi = raw is not None and isinstance(raw.columns, pd.MultiIndex)
    present = set(raw.columns.get_level_values(0)) if multi else set()
    for ysym, name in names.items():
        if multi and ysym in present:
            sub = raw[ysym]
        elif raw is not None and not multi and len(names) == 1 and not raw.empty:
            sub = raw  # single ticker downloaded without a MultiIndex
        else:
            empty.append(name)
            continue
        cols = {f: sub[f].to_numpy(dtype="float64") if f in sub.columns else None for f in _FIELDS}
        idx = pd.DatetimeIndex(sub.index)
        if idx.tz is not None:
            idx = idx.tz_localize(None)
        data: dict[str, Any] = {"date": idx.to_numpy().astype("datetime64[D]")}
        n = len(idx)
        for field, col in _FIELDS.items():
            if col == "volume" and not with_volume:
                continue
            values = cols[field]
            data[col] = values if values is not None else [None] * n
        frame = pl.DataFrame(data).with_columns(pl.col(c).cast(pl.Float64).fill_nan(None) for c in data if c != "date")
        frame = frame.filter(~pl.all_horizontal(pl.col(["open", "high", "low", "close"]).is_null()))
        if frame.is_empty():
            empty.append(name)
            continue
        frames.append(frame.with_columns(pl.lit(name).alias("key")))
    return (pl.concat(frames) if frames else pl.DataFrame()), empty


class YahooMarketSource:
    """Downloads a :class:`Universe` from Yahoo Finance with ``yfinance.download``."""

    @staticmethod
    def is_reachable(timeout: float = 3.0) -> bool:
        """True when a TCP connection to query1.finance.yahoo.com:443 opens within ``timeout`` s."""
        try:
            with socket.create_connection((YAHOO_HOST, YAHOO_PORT), timeout=timeout):
                return True
        except OSError:
            return False

    def load(self, universe: Universe, sectors_file: Path | None = None) -> MarketData:
        """Download bars (ETFs + stocks), VIX/VIX3M and build the sectors frame.

        Stocks: ``universe.stocks`` when given, otherwise (``include_stocks``) every non-ETF ticker
        of ``sectors_file``; with neither, only ETFs are loaded and a warning is recorded.
        Bars cover ``[history_start, history_end]`` inclusive (yfinance's ``end`` is exclusive, so
        ``history_end + 1 day`` is requested and later rows are cut).
        """
        if not self.is_reachable():
            raise SourceUnavailableError(
                f"Yahoo Finance ({YAHOO_HOST}:{YAHOO_PORT}) is not reachable: no network connection or "
                "the host is blocked. Set REGIMEFLOW_SOURCE=csv with REGIMEFLOW_DATA_DIR=<dir> "
                "or use source=synthetic"
            )
        warnings: list[str] = []
        etfs = universe.etf_tickers()
        file_sectors = read_sectors_file(Path(sectors_file)) if sectors_file is not None else None
        stocks: list[str] = []
        if universe.include_stocks:
            if universe.stocks is not None:
                stocks = list(universe.stocks)
            elif file_sectors is not None:
                stocks = [t for t in file_sectors["ticker"].to_list() if t not in etfs and t not in SECTOR_ETFS]
            else:
                warnings.append("include_stocks is set but neither universe.stocks nor a sectors file was "
                                "given: only ETFs were loaded from Yahoo")
        equities = list(dict.fromkeys([*etfs, *stocks]))
        unknown = [s for s in universe.indices if s not in INDEX_SYMBOLS]
        if unknown:
            raise DataSourceError(f"unknown index symbol(s) {unknown}; Yahoo source knows {list(INDEX_SYMBOLS)}")

        start = universe.history_start or EARLIEST
        last = universe.history_end or date.today()
        eq_names = {yahoo_symbol(t): t for t in equities}
        ix_names = {INDEX_SYMBOLS[s]: s for s in universe.indices}
        raw = self._download([*eq_names, *ix_names], start, last + timedelta(days=1))

        bars, empty_eq = _long_frame(raw, eq_names, with_volume=True)
        idx, empty_ix = _long_frame(raw, ix_names, with_volume=False)
        empty = empty_eq + empty_ix
        if empty:
            raise SourceUnavailableError(
                f"Yahoo Finance returned no data for {', '.join(empty)} between {start} and {last} "
                "(delisted, renamed or rate-limited?); fix the universe or use another source"
            )
        in_range = pl.col("date").is_between(start, last)
        bars = bars.filter(in_range).rename({"key": "ticker"}).with_columns(adj_close=pl.col("close"))
        idx = idx.filter(in_range).rename({"key": "symbol"}) if not idx.is_empty() else pl.DataFrame(
            schema={**INDEX_BARS_SCHEMA})

        etf_sectors = pl.DataFrame(
            {"ticker": list(SECTOR_ETFS), "name": list(SECTOR_ETFS), "gics_sector": list(SECTOR_ETFS.values())}
        )
        parts = [etf_sectors]
        if file_sectors is not None:
            parts.append(file_sectors.filter(pl.col("ticker").is_in(stocks)))
            missing = sorted(set(stocks) - set(file_sectors["ticker"].to_list()))
            if missing:
                warnings.append(f"no sector in {sectors_file} for: {', '.join(missing)}")
        elif stocks:
            warnings.append("no sectors file given: stocks have no GICS sector")
        sectors = pl.concat(parts).unique("ticker", keep="first")
        return MarketData(
            bars=conform(bars, BARS_SCHEMA, ["ticker", "date"]),
            index_bars=conform(idx, INDEX_BARS_SCHEMA, ["symbol", "date"]),
            sectors=conform(sectors, SECTORS_SCHEMA, ["ticker"]),
            source="yahoo",
            description=f"Yahoo Finance via yfinance ({start}..{last}, {len(equities)} tickers)",
            warnings=tuple(warnings),
        )

    @staticmethod
    def _download(symbols: list[str], start: date, end_exclusive: date) -> Any:
        """One ``yfinance.download`` call; errors become SourceUnavailableError."""
        import yfinance

        try:
            return yfinance.download(
                symbols,
                start=start.isoformat(),
                end=end_exclusive.isoformat(),
                auto_adjust=True,
                group_by="ticker",
                progress=False,
                threads=True,
            )
        except Exception as exc:  # network / parsing errors inside yfinance
            raise SourceUnavailableError(f"yfinance.download failed for {len(symbols)} symbols: {exc}") from exc
