"""Reads that decide what an incremental feature / label run writes (the tables themselves are written by
the IO manager through ``warehouse.catalog``)."""
from __future__ import annotations

from collections.abc import Sequence

from warehouse.catalog import storage
from warehouse.db import Warehouse, scalar, table_exists


def earliest_changed_date(wh: Warehouse, asset_path: Sequence[str]):
    """The earliest date whose bar (or VIX/VIX3M row) was written after the asset's table last saw it: the
    first row of a causal derived table that can differ from what is stored. ``None`` when nothing changed;
    the earliest bar date when the table does not exist yet."""
    table = storage(asset_path).main.table
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
