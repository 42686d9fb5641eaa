"""``decisions.daily``: the append-only audit log of daily decisions, and the analyst views on it.

Append-only means: :func:`append_decisions` inserts rows dated after the newest logged decision and
refuses anything else; nothing in the pipeline updates or deletes a logged row. A re-run of a night
whose decision exists therefore writes nothing.
"""
from __future__ import annotations

from importlib import resources

import polars as pl

from warehouse.db import Warehouse, query_pl, scalar, table_exists

DECISIONS_TABLE = "decisions.daily"


class AppendOnlyViolation(ValueError):
    """An attempt to write a decision dated on or before the newest logged one."""


def last_decision_date(wh: Warehouse):
    """The newest logged decision date, or None (empty, or a warehouse created before the log existed)."""
    with wh.read() as con:
        return scalar(con, f"SELECT max(decision_date) FROM {DECISIONS_TABLE}") if table_exists(con, DECISIONS_TABLE) else None


def recent_decisions(wh: Warehouse, n: int) -> pl.DataFrame:
    """The newest ``n`` logged decisions, oldest first (all columns); empty when there is no log yet."""
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
    """Insert ``frame`` (columns of ``decisions.daily``) in one transaction, then refresh the views.
    Raises :class:`AppendOnlyViolation` when a row is not dated after every logged decision."""
    if frame.is_empty():
        return 0
    if frame["decision_date"].is_duplicated().any():
        raise AppendOnlyViolation("duplicate decision_date in the batch")
    with wh.write() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            newest = scalar(con, f"SELECT max(decision_date) FROM {DECISIONS_TABLE}")
            first = frame["decision_date"].min()
            if newest is not None and first <= newest:
                raise AppendOnlyViolation(
                    f"decisions.daily is append-only: the batch starts {first}, the log already ends {newest}")
            con.register("_decisions_view", frame.to_arrow())
            cols = ", ".join(f'"{c}"' for c in frame.columns)
            con.execute(f"INSERT INTO {DECISIONS_TABLE} ({cols}) SELECT {cols} FROM _decisions_view")
            con.unregister("_decisions_view")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        con.execute(resources.files("warehouse").joinpath("decision_views.sql").read_text())
    return frame.height
