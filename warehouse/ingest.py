"""Writing a market load into ``raw.*`` / ``ref.*`` in ONE transaction, with an ingest log.

A batch is all-or-nothing: if any table's upsert fails, every table rolls back to its previous
contents and a ``failed`` row is written to ``raw.ingest_log``. Rejected batches (malformed input
caught before writing) are logged with :func:`log_rejected_batch`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from ml.data.market import MarketData
from warehouse.db import Warehouse, query_pl, quote_ident, scalar, table_exists, transaction
from warehouse.upsert import UpsertCounts, upsert

REAL_SOURCES = {"csv", "yahoo"}


class SourceMismatchError(RuntimeError):
    """The warehouse holds data of another kind (synthetic vs real); mixing them is refused."""


@dataclass(frozen=True)
class IngestResult:
    source: str
    description: str
    counts: tuple[UpsertCounts, ...]

    def by_table(self) -> dict[str, UpsertCounts]:
        return {c.table: c for c in self.counts}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _log_rows(con, run_id: str, source: str, description: str, rows: list[tuple], started: datetime) -> None:
    finished = _utcnow()
    con.executemany(
        "INSERT INTO raw.ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, t, source, description, n, ins, upd, n - ins - upd - rej, rej, status, msg, started, finished)
         for t, n, ins, upd, rej, status, msg in rows],
    )


def stored_source_kinds(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT DISTINCT source FROM raw.bars").fetchall()}


def check_source_compatible(con, source: str) -> None:
    """Refuse to mix synthetic and real data in one warehouse."""
    stored = stored_source_kinds(con)
    if not stored:
        return
    incoming_real = source in REAL_SOURCES
    if any((s in REAL_SOURCES) != incoming_real for s in stored):
        raise SourceMismatchError(
            f"the warehouse already holds {sorted(stored)} data and this run loads {source!r} data; "
            "synthetic and real data are never mixed. Use another warehouse path (REGIMEFLOW_WAREHOUSE) "
            "or delete the warehouse file (regimeflow run --fresh)."
        )


def ingest_market(wh: Warehouse, data: MarketData, run_id: str) -> IngestResult:
    """Upsert bars, index bars and sectors in one transaction; log per-table counts."""
    started = _utcnow()
    with wh.write() as con:
        check_source_compatible(con, data.source)

        def batch() -> tuple[UpsertCounts, ...]:
            with transaction(con):
                counts = (
                    upsert(con, "raw.bars", data.bars, ["ticker", "date"], source=data.source),
                    upsert(con, "raw.index_bars", data.index_bars, ["symbol", "date"], source=data.source),
                    upsert(con, "ref.sectors", data.sectors, ["ticker"], source=data.source),
                )
                _log_rows(con, run_id, data.source, data.description,
                          [(c.table, c.rows_in, c.inserted, c.updated, 0, "ok", None) for c in counts], started)
            return counts

        try:
            counts = wh.retry_conflicts(batch, "ingest raw.bars, raw.index_bars, ref.sectors")
        except Exception as exc:
            _log_rows(con, run_id, data.source, data.description,
                      [("*", data.bars.height, 0, 0, data.bars.height, "failed", f"{type(exc).__name__}: {exc}")],
                      started)
            raise
    return IngestResult(data.source, data.description, counts)


@dataclass(frozen=True)
class BatchAudit:
    """The error-severity rules run on what ``raw.*`` would hold after a batch (``bars`` / ``index``
    :class:`~warehouse.quality.QualityReport`), before anything is written."""

    bars: object
    index: object
    seconds: float

    @property
    def passed(self) -> bool:
        return self.bars.passed and self.index.passed

    def message(self, file_of=None) -> str:
        """One line per failed error rule (rule, ticker / symbol, date, values; ``file_of(ticker)`` names the
        source file where known)."""
        lines = []
        for report in (self.bars, self.index):
            for r in report.failures():
                lines.append(r.summary_line())
                if file_of is not None:
                    files = sorted({f for ex in r.examples[:5]
                                    if (f := file_of(ex.get("ticker") or ex.get("symbol") or "")) is not None})
                    if files:
                        lines.append(f"  file(s): {', '.join(files)}")
        return "\n".join(lines)


def _stored(wh: Warehouse, table: str, key: str, values: list[str] | None, columns: list[str]) -> pl.DataFrame | None:
    """Stored rows of ``table`` for the ``key`` values (all rows when None); None without a table."""
    if not wh.exists():
        return None
    with wh.read() as con:
        if not table_exists(con, table):
            return None
        where, params = ("", None) if values is None else (f"WHERE {key} IN (SELECT unnest(?))", [values])
        return query_pl(con, f"SELECT {', '.join(columns)} FROM {table} {where}", params)


def _overlay(stored: pl.DataFrame | None, batch: pl.DataFrame, key: str) -> pl.DataFrame:
    """``stored`` rows replaced / extended by ``batch`` (the upsert's result for the batch's keys)."""
    if stored is None or stored.is_empty():
        return batch
    keep = stored.join(batch.select(key, "date"), on=[key, "date"], how="anti")
    return pl.concat([keep, batch.select(stored.columns)], how="vertical_relaxed").sort(key, "date")


def audit_batch(wh: Warehouse, data: MarketData, reference_ticker: str, history_start, history_end,
                waivers: pl.DataFrame | None = None) -> BatchAudit:
    """Write-audit-publish, the audit: validate the state ``raw.bars`` / ``raw.index_bars`` would have after
    upserting ``data`` - the stored rows of the batch's tickers (and every stored index row) overlaid by the batch, so rules
    that need history (returns, gaps, scale breaks) see the days before an incremental batch - with every
    data-quality rule (waivers applied), against the reference ticker's dates. Nothing is written."""
    import time

    from ml.data.market import BARS_SCHEMA, INDEX_BARS_SCHEMA
    from warehouse import quality

    t0 = time.perf_counter()
    tickers = sorted({*data.bars["ticker"].unique().to_list(), reference_ticker})
    bars = _overlay(_stored(wh, "raw.bars", "ticker", tickers, list(BARS_SCHEMA)),
                    data.bars.select(list(BARS_SCHEMA)), "ticker")
    index = _overlay(_stored(wh, "raw.index_bars", "symbol", None, list(INDEX_BARS_SCHEMA)),
                     data.index_bars.select(list(INDEX_BARS_SCHEMA)), "symbol")
    calendar = bars.filter(pl.col("ticker") == reference_ticker)["date"]
    wv = quality.load_known_anomalies() if waivers is None else waivers
    report_bars = quality.validate_bars(bars, calendar, history_start=history_start, history_end=history_end,
                                        waivers=wv)
    report_index = quality.validate_index_bars(index, calendar, history_start=history_start,
                                               history_end=history_end, waivers=wv)
    return BatchAudit(report_bars, report_index, time.perf_counter() - t0)


def log_rejected_batch(wh: Warehouse, run_id: str, source: str, description: str, message: str) -> None:
    """Record a batch rejected before writing (malformed input); no data table is touched."""
    started = _utcnow()
    with wh.write() as con:
        _log_rows(con, run_id, source, description, [("*", 0, 0, 0, 0, "rejected", message[:4000])], started)


def rebuild_trading_calendar(wh: Warehouse, reference_ticker: str) -> int:
    """Replace ``ref.trading_calendar`` with the dates observed for ``reference_ticker`` (one transaction;
    what the ``ref/trading_calendar`` asset writes, for scripts and tests without Dagster)."""
    from ml.data.market import trading_calendar_frame
    from warehouse.catalog import storage, write_asset

    with wh.read() as con:
        bars = query_pl(con, "SELECT ticker, date, source FROM raw.bars WHERE ticker = ? ORDER BY date",
                        [reference_ticker])
    frame = trading_calendar_frame(bars, reference_ticker)
    write_asset(wh, storage(("ref", "trading_calendar")), {"main": frame})
    return frame.height


def ticker_summary(wh: Warehouse) -> pl.DataFrame:
    """Per ticker: rows, first and last date, source (for asset metadata and the run summary)."""
    with wh.read() as con:
        return query_pl(
            con,
            """SELECT b.ticker, coalesce(s.gics_sector, '') AS gics_sector, count(*) AS rows,
                      min(b.date) AS first_date, max(b.date) AS last_date, any_value(b.source) AS source
               FROM raw.bars b LEFT JOIN ref.sectors s USING (ticker)
               GROUP BY ALL ORDER BY b.ticker""")


def index_summary(wh: Warehouse) -> pl.DataFrame:
    with wh.read() as con:
        return query_pl(con, """SELECT symbol, count(*) AS rows, min(date) AS first_date, max(date) AS last_date,
                      any_value(source) AS source
               FROM raw.index_bars GROUP BY symbol ORDER BY symbol""")


def read_bars(wh: Warehouse, tickers: list[str] | None = None) -> pl.DataFrame:
    """Canonical bars sorted by ticker, date; only ``tickers`` when given."""
    where, params = ("WHERE ticker IN (SELECT unnest(?))", [list(tickers)]) if tickers is not None else ("", None)
    with wh.read() as con:
        return query_pl(con, "SELECT ticker, date, open, high, low, close, adj_close, volume FROM raw.bars "
                        f"{where} ORDER BY ticker, date", params)


def read_calendar(wh: Warehouse) -> pl.Series:
    with wh.read() as con:
        return query_pl(con, "SELECT date FROM ref.trading_calendar ORDER BY date")["date"]


def table_counts(wh: Warehouse) -> dict[str, int]:
    """Row count of every base table, keyed ``schema.table``."""
    with wh.read() as con:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary AND database_name = "
            "current_database() ORDER BY ALL"
        ).fetchall()
        return {f"{s}.{t}": scalar(con, f"SELECT count(*) FROM {quote_ident(s)}.{quote_ident(t)}") for s, t in tables}


@dataclass(frozen=True)
class StoredExtent:
    """What ``raw.*`` already holds: the newest session, the incremental window start, stored keys."""

    last_date: object  # date | None
    window_start: object  # date | None: the overlap_sessions-th newest calendar session
    tickers: frozenset[str]
    symbols: frozenset[str]


def stored_extent(wh: Warehouse, overlap_sessions: int) -> StoredExtent:
    """The newest stored session and the start of an incremental reload that re-reads the last
    ``overlap_sessions`` sessions (to catch revised bars). Empty warehouse: all None / empty."""
    if not wh.exists():
        return StoredExtent(None, None, frozenset(), frozenset())
    with wh.read() as con:
        last = scalar(con, "SELECT max(date) FROM ref.trading_calendar")
        start = scalar(con, "SELECT min(date) FROM (SELECT date FROM ref.trading_calendar ORDER BY date DESC LIMIT ?)",
                       [max(int(overlap_sessions), 1)])
        tickers = frozenset(r[0] for r in con.execute("SELECT DISTINCT ticker FROM raw.bars").fetchall())
        symbols = frozenset(r[0] for r in con.execute("SELECT DISTINCT symbol FROM raw.index_bars").fetchall())
    return StoredExtent(last, start, tickers, symbols)


def incremental_slice(data: MarketData, extent: StoredExtent) -> MarketData:
    """The part of a load an incremental ingest writes: rows dated on/after ``extent.window_start``, plus
    the whole history of tickers / index symbols the warehouse does not hold yet."""
    from dataclasses import replace

    bars = data.bars.filter((pl.col("date") >= extent.window_start) | ~pl.col("ticker").is_in(list(extent.tickers)))
    index_bars = data.index_bars.filter(
        (pl.col("date") >= extent.window_start) | ~pl.col("symbol").is_in(list(extent.symbols)))
    return replace(data, bars=bars, index_bars=index_bars)

