"""Idempotent upserts keyed by natural keys, one transaction per batch.

``upsert`` classifies every incoming row as inserted (new key), updated (key exists, some value
differs: a corrected bar) or unchanged, and writes only the first two. Unchanged rows keep their
``ingested_at``. Everything happens inside the caller's transaction, so a failure anywhere in a
batch rolls back every table of that batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import polars as pl

from warehouse.db import quote_ident as _ident


@dataclass(frozen=True)
class UpsertCounts:
    table: str
    rows_in: int
    inserted: int
    updated: int

    @property
    def unchanged(self) -> int:
        return self.rows_in - self.inserted - self.updated


def upsert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    keys: list[str],
    *,
    source: str | None = None,
    stamp_column: str | None = "ingested_at",
) -> UpsertCounts:
    """Upsert ``frame`` into ``table`` (``schema.name``) on ``keys``; caller owns the transaction.

    ``source`` fills a ``source`` column; ``stamp_column`` is set to the current UTC time on
    inserted/updated rows. Key columns must be unique within ``frame``.
    """
    if frame.select(keys).is_duplicated().any():
        dup = frame.filter(frame.select(keys).is_duplicated()).select(keys).row(0)
        raise ValueError(f"duplicate key {dict(zip(keys, dup))} in the batch for {table}")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    stage = frame
    if source is not None:
        stage = stage.with_columns(pl.lit(source).alias("source"))
    values = [c for c in stage.columns if c not in keys]
    con.register("_stage_view", stage.to_arrow())
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _stage AS SELECT * FROM _stage_view")
    finally:
        con.unregister("_stage_view")
    on = " AND ".join(f"s.{_ident(k)} = t.{_ident(k)}" for k in keys)
    differs = " OR ".join(f"s.{_ident(c)} IS DISTINCT FROM t.{_ident(c)}" for c in values) or "FALSE"
    first_key = _ident(keys[0])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _changes AS
            SELECT s.*, t.{first_key} IS NULL AS _is_new
            FROM _stage s LEFT JOIN {table} t ON {on}
            WHERE t.{first_key} IS NULL OR ({differs})"""
    )
    inserted, updated = con.execute(
        "SELECT count(*) FILTER (WHERE _is_new), count(*) FILTER (WHERE NOT _is_new) FROM _changes"
    ).fetchall()[0]
    col_list = ", ".join(_ident(c) for c in [*keys, *values])
    stamp = [stamp_column] if stamp_column else []
    # changed rows: UPDATE of their value columns (keys untouched, so DuckDB's key index is not rewritten: a
    # delete + re-insert of many keyed rows in one transaction fails in DuckDB 1.5.5, "Failed to delete all rows
    # from index"); new rows: INSERT. The same statements on a DuckLake, which has no keys (no INSERT OR REPLACE)
    if updated:
        sets = ", ".join([*(f"{_ident(c)} = s.{_ident(c)}" for c in values), *(f"{_ident(c)} = ?" for c in stamp)])
        con.execute(f"UPDATE {table} AS t SET {sets} FROM _changes AS s WHERE NOT s._is_new AND {on}",
                    [now] if stamp else [])
    if inserted:
        stamp_cols = "".join(f", {_ident(c)}" for c in stamp)
        stamp_vals = ", ?::TIMESTAMP" if stamp else ""
        con.execute(f"INSERT INTO {table} ({col_list}{stamp_cols}) SELECT {col_list}{stamp_vals} FROM _changes "
                    "WHERE _is_new", [now] if stamp else [])
    con.execute("DROP TABLE _stage; DROP TABLE _changes")
    return UpsertCounts(table, frame.height, int(inserted), int(updated))
