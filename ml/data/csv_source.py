"""CSV-directory market source, in the layout of the shared snapshot::

    <dir>/ohlcv/<TICKER>.csv[.gz]   date,open,high,low,close,adj_close,volume
    <dir>/index/VIX.csv, VIX3M.csv  date,open,high,low,close
    <dir>/sectors.csv               ticker,name,gics_sector

Every file is parsed as text first and validated row by row, so a malformed file fails with
``DataSourceError`` naming the file, the 1-based line and the problem. All files are validated
before anything is returned: a bad file rejects the whole batch (nothing is written downstream).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import polars as pl

from ml.data.market import (
    BARS_SCHEMA,
    INDEX_BARS_SCHEMA,
    SECTORS_SCHEMA,
    DataSourceError,
    MarketData,
    conform,
)
from ml.data.universe import ALLOCATION_ASSETS, SECTOR_ETFS, Universe

log = logging.getLogger(__name__)

OHLCV_COLUMNS = ["date", "open", "high", "low", "close", "adj_close", "volume"]
INDEX_COLUMNS = ["date", "open", "high", "low", "close"]
SECTOR_COLUMNS = ["ticker", "name", "gics_sector"]
MAX_REPORTED_PROBLEMS = 20
#: Tickers always recognised in ``ohlcv/`` (the default universe's ETFs), also when not requested.
DEFAULT_ETFS = frozenset(ALLOCATION_ASSETS) | frozenset(SECTOR_ETFS)


def _problem(path: Path, line: int | None, msg: str) -> str:
    where = f"{path}:{line}" if line is not None else str(path)
    return f"{where}: {msg}"


def read_text_table(path: Path, required: list[str]) -> pl.DataFrame:
    """Read a CSV as all-text columns; check it is non-empty, has the required header, no repeated header.

    Returns the frame with an extra ``_line`` column (1-based line number in the file, header = line 1).
    """
    if not path.exists():
        raise DataSourceError(_problem(path, None, "file not found"))
    if path.stat().st_size == 0:
        raise DataSourceError(_problem(path, None, "file is empty (expected a header line)"))
    try:
        frame = pl.read_csv(path, infer_schema=False, has_header=True)
    except pl.exceptions.NoDataError:
        raise DataSourceError(_problem(path, None, "file is empty (expected a header line)")) from None
    except Exception as exc:  # polars parse errors (ragged rows, bad quoting, corrupt gzip)
        raise DataSourceError(_problem(path, None, f"cannot parse CSV: {exc}")) from exc
    header = [c.strip().lower() for c in frame.columns]
    frame.columns = header
    missing = [c for c in required if c not in header]
    if missing:
        raise DataSourceError(
            _problem(path, 1, f"missing column(s) {missing}; header is {header}, expected {required}")
        )
    frame = frame.select(required).with_row_index("_line", offset=2)
    if frame.height == 0:
        raise DataSourceError(_problem(path, None, "file has a header but no data rows"))
    first = required[0]
    repeated = frame.filter(pl.col(first).str.strip_chars().str.to_lowercase() == first)
    if repeated.height:
        raise DataSourceError(_problem(path, int(repeated["_line"][0]), "duplicated header line inside the data"))
    return frame


def parse_typed(path: Path, frame: pl.DataFrame, numeric: list[str], non_negative: list[str] = ()) -> pl.DataFrame:
    """Parse ``date`` (ISO yyyy-mm-dd) and numeric columns; raise naming the first bad lines.

    Empty numeric cells are rejected (prices must be present); dates must be strictly ascending
    and unique within a file.
    """
    parsed = frame.with_columns(
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("date"),
        *[pl.col(c).str.strip_chars().cast(pl.Float64, strict=False).alias(c) for c in numeric],
    )
    problems: list[str] = []
    bad_date = parsed.filter(pl.col("date").is_null())
    for line, raw in zip(bad_date["_line"], frame.filter(pl.col("_line").is_in(bad_date["_line"].implode()))["date"]):
        problems.append(_problem(path, line, f"bad date {raw!r} (expected YYYY-MM-DD)"))
    for col in numeric:
        bad = parsed.filter(pl.col(col).is_null() | pl.col(col).is_nan() | pl.col(col).is_infinite())
        if bad.height:
            raws = frame.filter(pl.col("_line").is_in(bad["_line"].implode()))[col]
            for line, raw in zip(bad["_line"], raws):
                problems.append(_problem(path, line, f"non-numeric or missing {col} {raw!r}"))
    for col in non_negative:
        neg = parsed.filter(pl.col(col) < 0)
        for line, val in zip(neg["_line"], neg[col]):
            problems.append(_problem(path, line, f"negative {col} {val}"))
    if not problems:
        diffs = parsed.with_columns(prev=pl.col("date").shift(1)).filter(pl.col("date") <= pl.col("prev"))
        for line, d, p in zip(diffs["_line"], diffs["date"], diffs["prev"]):
            kind = "duplicate" if d == p else "out-of-order"
            problems.append(_problem(path, line, f"{kind} date {d} (previous row {p})"))
    if problems:
        more = len(problems) - MAX_REPORTED_PROBLEMS
        text = "\n".join(problems[:MAX_REPORTED_PROBLEMS]) + (f"\n... and {more} more" if more > 0 else "")
        raise DataSourceError(text)
    return parsed


class CsvMarketSource:
    """Load a snapshot directory. ``root`` must contain ``ohlcv/``, ``index/`` and ``sectors.csv``."""

    source_kind = "csv"

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def describe(self) -> str:
        return f"CSV directory {self.root}"

    def ohlcv_path(self, ticker: str) -> Path | None:
        for suffix in (".csv", ".csv.gz"):
            path = self.root / "ohlcv" / f"{ticker}{suffix}"
            if path.exists():
                return path
        return None

    def load_sectors(self) -> pl.DataFrame:
        path = self.root / "sectors.csv"
        frame = read_text_table(path, SECTOR_COLUMNS)
        blank = frame.filter(pl.col("ticker").is_null() | (pl.col("ticker").str.strip_chars() == ""))
        if blank.height:
            raise DataSourceError(_problem(path, int(blank["_line"][0]), "empty ticker"))
        dup = frame.filter(pl.col("ticker").is_duplicated())
        if dup.height:
            raise DataSourceError(_problem(path, int(dup["_line"][1]), f"duplicate ticker {dup['ticker'][0]!r}"))
        return conform(frame.with_columns(pl.col(c).str.strip_chars() for c in SECTOR_COLUMNS), SECTORS_SCHEMA, ["ticker"])

    def tickers(self, universe: Universe, sectors: pl.DataFrame) -> list[str]:
        """Tickers to load: the ETFs plus stocks (explicit list, or every non-ETF in sectors.csv)."""
        etfs = universe.etf_tickers()
        if not universe.include_stocks:
            return etfs
        stocks = universe.stocks
        if stocks is None:
            stocks = [t for t in sectors["ticker"].to_list() if t not in etfs]
        return list(dict.fromkeys([*etfs, *stocks]))

    def check_unknown_files(self, known: set[str]) -> None:
        """Every ``ohlcv/`` file must be a known ticker (universe, default ETFs or sectors.csv): typos fail loudly."""
        unknown = []
        for path in sorted((self.root / "ohlcv").glob("*.csv*")):
            ticker = path.name.removesuffix(".gz").removesuffix(".csv")
            if ticker not in known:
                unknown.append(_problem(path, None, f"unknown ticker {ticker!r}: not in the universe config or sectors.csv"))
        if unknown:
            raise DataSourceError("\n".join(unknown))

    def load(
        self,
        universe: Universe,
        on_progress: Callable[[str], None] | None = None,
    ) -> MarketData:
        """Read and validate everything the universe asks for; raise ``DataSourceError`` on any bad file."""
        progress = on_progress or log.info
        if not self.root.is_dir():
            raise DataSourceError(f"{self.root}: data directory not found")
        sectors = self.load_sectors()
        tickers = self.tickers(universe, sectors)
        self.check_unknown_files(set(tickers) | set(sectors["ticker"]) | set(universe.etf_tickers()) | DEFAULT_ETFS)
        lo, hi = universe.history_start, universe.history_end

        def in_range(frame: pl.DataFrame) -> pl.DataFrame:
            if lo is not None:
                frame = frame.filter(pl.col("date") >= lo)
            if hi is not None:
                frame = frame.filter(pl.col("date") <= hi)
            return frame

        frames, problems, missing = [], [], []
        for i, ticker in enumerate(tickers, 1):
            path = self.ohlcv_path(ticker)
            if path is None:
                missing.append(ticker)
                continue
            try:
                raw = read_text_table(path, OHLCV_COLUMNS)
                typed = parse_typed(path, raw, OHLCV_COLUMNS[1:], non_negative=["volume"])
            except DataSourceError as exc:
                problems.append(str(exc))
                continue
            typed = in_range(typed.drop("_line")).with_columns(pl.lit(ticker).alias("ticker"))
            frames.append(typed)
            span = f"{typed['date'].min()}..{typed['date'].max()}" if typed.height else "no rows in range"
            progress(f"read {ticker:<6} {typed.height:>6} bars {span} ({i}/{len(tickers)})")
        if missing:
            problems.append(
                f"{self.root / 'ohlcv'}: no file for ticker(s) {missing} (expected ohlcv/<TICKER>.csv or .csv.gz)"
            )
        index_frames = []
        for symbol in universe.indices:
            path = self.root / "index" / f"{symbol}.csv"
            try:
                typed = parse_typed(path, read_text_table(path, INDEX_COLUMNS), INDEX_COLUMNS[1:])
            except DataSourceError as exc:
                problems.append(str(exc))
                continue
            typed = in_range(typed.drop("_line")).with_columns(pl.lit(symbol).alias("symbol"))
            index_frames.append(typed)
            progress(f"read index {symbol:<6} {typed.height:>6} rows")
        if problems:
            raise DataSourceError(
                f"rejected the batch from {self.root}: {len(problems)} file(s) with problems; nothing was written\n"
                + "\n".join(problems)
            )
        bars = conform(pl.concat(frames), BARS_SCHEMA, ["ticker", "date"])
        index_bars = conform(pl.concat(index_frames), INDEX_BARS_SCHEMA, ["symbol", "date"])
        sectors = sectors.filter(pl.col("ticker").is_in(tickers))
        return MarketData(bars, index_bars, sectors, source="csv", description=self.describe())


def write_csv_dir(market: MarketData, root: str | Path, gzip_tickers: frozenset[str] = frozenset()) -> Path:
    """Write ``market`` in the snapshot layout (the inverse of :class:`CsvMarketSource`)."""
    import gzip

    root = Path(root)
    (root / "ohlcv").mkdir(parents=True, exist_ok=True)
    (root / "index").mkdir(parents=True, exist_ok=True)
    for (ticker,), frame in market.bars.group_by("ticker", maintain_order=True):
        out = frame.select(OHLCV_COLUMNS)
        if ticker in gzip_tickers:
            with gzip.open(root / "ohlcv" / f"{ticker}.csv.gz", "wb") as fh:
                out.write_csv(fh)
        else:
            out.write_csv(root / "ohlcv" / f"{ticker}.csv")
    for (symbol,), frame in market.index_bars.group_by("symbol", maintain_order=True):
        frame.select(INDEX_COLUMNS).write_csv(root / "index" / f"{symbol}.csv")
    market.sectors.write_csv(root / "sectors.csv")
    return root
