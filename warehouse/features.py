"""Feature-store tables: ``features.daily`` (wide, one column per registry feature),
``features.registry`` (what each column means) and ``labels.forward`` (forward returns, buy/sell).
"""
from __future__ import annotations

import polars as pl

from warehouse.db import Warehouse, scalar, table_exists
from warehouse.ingest import stored_source_kinds
from warehouse.tables import ensure_table, write_replacing
from warehouse.upsert import UpsertCounts, upsert

FEATURES_TABLE = "features.daily"
REGISTRY_TABLE = "features.registry"
LABELS_TABLE = "labels.forward"
KEYS = ["ticker", "date"]


def warehouse_source(wh: Warehouse) -> str:
    """The single source kind stored in ``raw.bars`` (the ingestion guard forbids mixing kinds)."""
    with wh.read() as con:
        kinds = stored_source_kinds(con)
    if not kinds:
        raise ValueError(f"raw.bars in {wh.path} is empty: materialize the ingestion assets first")
    return "+".join(sorted(kinds))


def write_keyed(wh: Warehouse, table: str, frame: pl.DataFrame, source: str, comment: str) -> UpsertCounts:
    """Upsert a (ticker, date)-keyed frame into ``table`` with a ``source`` column, one transaction.
    An empty frame writes nothing (no write session, no snapshot publish)."""
    if frame.is_empty():
        return UpsertCounts(table, 0, 0, 0)
    schema = {**dict(frame.schema), "source": pl.Utf8, "computed_at": pl.Datetime("us")}
    with wh.write() as con:
        ensure_table(con, table, schema, KEYS, comment)
        con.execute("BEGIN TRANSACTION")
        try:
            counts = upsert(con, table, frame, KEYS, source=source, stamp_column="computed_at")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return counts


def write_registry(wh: Warehouse, registry: pl.DataFrame) -> int:
    return write_replacing(wh, REGISTRY_TABLE, registry, ["name"],
                           "One row per column of features.daily: family, window, unit, description, warm-up rows.")


def earliest_changed_date(wh: Warehouse, table: str):
    """The earliest date whose bar (or VIX/VIX3M row) was written after ``table`` last saw it: the first
    row of a causal derived table that can differ from what is stored. ``None`` when nothing changed;
    the earliest bar date when ``table`` does not exist yet."""
    with wh.read() as con:
        if not table_exists(con, table):
            return scalar(con, "SELECT min(date) FROM raw.bars")
        return scalar(con, f"""
            SELECT min(date) FROM (
                SELECT b.date FROM raw.bars b LEFT JOIN {table} t USING (ticker, date)
                WHERE t.ticker IS NULL OR b.ingested_at > t.computed_at
                UNION ALL
                SELECT date FROM raw.index_bars WHERE ingested_at > (SELECT max(computed_at) FROM {table}))""")


def sessions_before(wh: Warehouse, day, n: int):
    """The calendar session ``n`` sessions before ``day`` (the first session when there are fewer)."""
    with wh.read() as con:
        return scalar(con, """SELECT coalesce(min(date), ?) FROM (SELECT date FROM ref.trading_calendar
                              WHERE date < ? ORDER BY date DESC LIMIT ?)""", [day, day, int(n)])
