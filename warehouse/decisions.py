"""``decisions.daily``: the append-only audit log of daily decisions, and the analyst views on it.

Append-only means: the ``decisions/daily`` asset's writer (``warehouse.catalog``, mode ``append``) inserts
rows dated after the newest logged decision and refuses anything else; nothing in the pipeline updates or
deletes a logged row. A re-run of a night whose decision exists therefore writes nothing.
"""
from __future__ import annotations

import polars as pl

from warehouse.catalog import AppendOnlyViolation, storage, write_asset
from warehouse.db import Warehouse, query_pl, scalar, table_exists

DECISIONS_TABLE = storage(("decisions", "daily")).main.table

__all__ = ["AppendOnlyViolation", "append_decisions", "last_decision_date", "read_decisions", "recent_decisions"]


def last_decision_date(wh: Warehouse):
    """The newest logged decision date, or None (empty, no warehouse yet, or one from before the log existed)."""
    if not wh.exists():
        return None
    with wh.read() as con:
        return scalar(con, f"SELECT max(decision_date) FROM {DECISIONS_TABLE}") if table_exists(con, DECISIONS_TABLE) else None


def recent_decisions(wh: Warehouse, n: int) -> pl.DataFrame:
    """The newest ``n`` logged decisions, oldest first (all columns); empty when there is no log yet."""
    if not wh.exists():
        return pl.DataFrame()
    with wh.read() as con:
        if not table_exists(con, DECISIONS_TABLE):
            return pl.DataFrame()
        return query_pl(con, f"SELECT * FROM (SELECT * FROM {DECISIONS_TABLE} ORDER BY decision_date DESC LIMIT ?) "
                        "ORDER BY decision_date", [int(n)])


def read_decisions(wh: Warehouse) -> pl.DataFrame:
    with wh.read() as con:
        if not table_exists(con, DECISIONS_TABLE):
            return pl.DataFrame()
        return query_pl(con, f"SELECT * FROM {DECISIONS_TABLE} ORDER BY decision_date")


def append_decisions(wh: Warehouse, frame: pl.DataFrame) -> int:
    """Insert ``frame`` (columns of ``decisions.daily``) in one transaction, then refresh the views (what the
    asset's IO manager does). Raises :class:`AppendOnlyViolation` when a row is not dated after every
    logged decision."""
    return write_asset(wh, storage(("decisions", "daily")), {"main": frame}).counts.get("main", (0,))[0]
