"""Generic table helpers for derived (wide) tables whose columns come from code registries.

``ensure_table`` creates a table from a Polars schema, or adds columns that a newer registry
introduced (existing rows get NULL there), so a feature added in code never needs a manual migration.
"""
from __future__ import annotations

import duckdb
import polars as pl

from warehouse.db import Warehouse, query_pl

_DUCK_TYPES: dict[type, str] = {
    pl.Float64: "DOUBLE",
    pl.Float32: "FLOAT",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Int16: "SMALLINT",
    pl.Int8: "TINYINT",
    pl.UInt32: "UINTEGER",
    pl.UInt8: "UTINYINT",
    pl.Utf8: "VARCHAR",
    pl.Date: "DATE",
    pl.Boolean: "BOOLEAN",
    pl.Datetime: "TIMESTAMP",
}


def duck_type(dtype: pl.DataType) -> str:
    for base, name in _DUCK_TYPES.items():
        if dtype == base or isinstance(dtype, base):
            return name
    raise TypeError(f"no DuckDB type mapped for Polars dtype {dtype}")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_table(con: duckdb.DuckDBPyConnection, table: str, schema: dict[str, pl.DataType], keys: list[str],
                 comment: str | None = None) -> None:
    """Create ``table`` (``schema.name``) with primary key ``keys``, or add the columns it lacks."""
    schema_name = table.split(".")[0]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_name}")
    cols = ", ".join(f"{_q(c)} {duck_type(t)}{' NOT NULL' if c in keys else ''}" for c, t in schema.items())
    pk = f", PRIMARY KEY ({', '.join(_q(k) for k in keys)})" if keys else ""
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols}{pk})")
    existing = {r[0] for r in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()}
    for c, t in schema.items():
        if c not in existing:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {_q(c)} {duck_type(t)}")
    if comment:
        con.execute(f"COMMENT ON TABLE {table} IS '{comment.replace(chr(39), chr(39) * 2)}'")


def read_table(wh: Warehouse, table: str, where: str = "", params: list | None = None,
               columns: list[str] | None = None) -> pl.DataFrame:
    cols = ", ".join(_q(c) for c in columns) if columns else "*"
    with wh.read() as con:
        return query_pl(con, f"SELECT {cols} FROM {table} {where}", params)


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, keys: list[str],
                 comment: str | None = None, where: str = "", params: list | None = None) -> int:
    """Inside the caller's write session and transaction: delete the rows matching ``where`` (all when
    empty) and insert ``frame``. The table must exist (:func:`ensure_table`); ``keys``/``comment`` are
    accepted so a :func:`write_many` entry can be passed through unchanged."""
    con.execute(f"DELETE FROM {table} {'WHERE ' + where if where else ''}", params or [])
    if frame.height:
        con.register("_replace_view", frame.to_arrow())
        try:
            cols = ", ".join(_q(c) for c in frame.columns)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _replace_view")
        finally:
            con.unregister("_replace_view")
    return frame.height


def write_replacing(wh: Warehouse, table: str, frame: pl.DataFrame, keys: list[str], comment: str | None = None,
                    where: str = "", params: list | None = None) -> int:
    """Replace the rows of ``table`` matching ``where`` (all rows when empty) with ``frame``, in one
    transaction: the write for one fold partition (``where="fold = ?"``) or a derived table."""
    return write_many(wh, [(table, frame, keys, comment, where, params)])


def write_many(wh: Warehouse, writes: list[tuple]) -> int:
    """Several :func:`replace_rows` writes ``(table, frame, keys, comment, where, params)`` in ONE write
    session and ONE transaction: all land together or none does (and one snapshot publish)."""
    with wh.write() as con:
        for table, frame, keys, comment, *_ in writes:
            ensure_table(con, table, dict(frame.schema), keys, comment)  # DDL outside the transaction
        con.execute("BEGIN TRANSACTION")
        try:
            n = sum(replace_rows(con, *w) for w in writes)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return n


def fold_write(table: str, frame: pl.DataFrame, fold: str, keys: list[str], comment: str | None = None) -> tuple:
    """The :func:`write_many` entry replacing one fold's rows (``frame`` without a ``fold`` column)."""
    out = frame.select(pl.lit(fold).alias("fold"), pl.all())
    return (table, out, ["fold", *keys], comment, "fold = ?", [fold])


def write_fold_rows(wh: Warehouse, table: str, frame: pl.DataFrame, fold: str, keys: list[str],
                    comment: str | None = None) -> int:
    """Idempotent per-fold write: ``frame`` (without a ``fold`` column) replaces that fold's rows."""
    return write_many(wh, [fold_write(table, frame, fold, keys, comment)])
