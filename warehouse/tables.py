"""Generic table helpers for derived (wide) tables whose columns come from code registries.

``ensure_table`` creates a table from a Polars schema, or adds columns that a newer registry
introduced (existing rows get NULL there), so a feature added in code never needs a manual migration.
"""
from __future__ import annotations

import duckdb
import polars as pl

from warehouse.db import Warehouse, is_lake, query_pl, table_exists
from warehouse.db import quote_ident as _q

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
    if isinstance(dtype, pl.List):
        return duck_type(dtype.inner) + "[]"
    for base, name in _DUCK_TYPES.items():
        if dtype == base or isinstance(dtype, base):
            return name
    raise TypeError(f"no DuckDB type mapped for Polars dtype {dtype}")


def ensure_table(con: duckdb.DuckDBPyConnection, table: str, schema: dict[str, pl.DataType], keys: list[str],
                 comment: str | None = None, primary_key: bool = True) -> None:
    """Create ``table`` (``schema.name``; ``keys`` NOT NULL, and its primary key unless ``primary_key`` is
    false), or add the columns it lacks."""
    schema_name = table.split(".")[0]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_name}")
    if not table_exists(con, table):
        cols = ", ".join(f"{_q(c)} {duck_type(t)}{' NOT NULL' if c in keys else ''}" for c, t in schema.items())
        pk = f", PRIMARY KEY ({', '.join(_q(k) for k in keys)})" if keys and primary_key and not is_lake(con) else ""
        con.execute(f"CREATE TABLE {table} ({cols}{pk})")
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


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Inside the caller's write session and transaction: insert ``frame`` (columns by name) into ``table``."""
    if frame.height:
        con.register("_insert_view", frame.to_arrow())
        try:
            cols = ", ".join(_q(c) for c in frame.columns)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _insert_view")
        finally:
            con.unregister("_insert_view")
    return frame.height


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, where: str = "",
                 params: list | None = None) -> int:
    """Inside the caller's write session and transaction: delete the rows matching ``where`` (all when
    empty) and insert ``frame``. The table must exist (:func:`ensure_table`)."""
    con.execute(f"DELETE FROM {table} {'WHERE ' + where if where else ''}", params or [])
    return insert_rows(con, table, frame)
