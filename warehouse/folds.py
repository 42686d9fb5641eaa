"""``ref.folds``: the walk-forward folds (key, train/test windows, embargo) that partition per-fold assets."""
from __future__ import annotations

import polars as pl

from ml.folds import Fold
from warehouse.db import Warehouse, query_pl, table_exists
from warehouse.tables import ensure_table
from warehouse.upsert import upsert

FOLDS_TABLE = "ref.folds"


def write_folds(wh: Warehouse, frame: pl.DataFrame) -> None:
    """Upsert fold definitions by key (a fold's windows may extend when the calendar grows)."""
    schema = {**dict(frame.schema), "updated_at": pl.Datetime("us")}
    with wh.write() as con:
        ensure_table(con, FOLDS_TABLE, schema, ["key"],
                     "Walk-forward folds: train [train_start, train_end], embargo sessions, test [test_start, test_end].")
        con.execute("BEGIN TRANSACTION")
        upsert(con, FOLDS_TABLE, frame, ["key"], stamp_column="updated_at")
        con.execute("COMMIT")


def read_fold(wh: Warehouse, key: str) -> Fold:
    """The fold stored under ``key``; a clear error when the folds asset has not produced it."""
    with wh.read() as con:
        rows = (query_pl(con, f"SELECT * FROM {FOLDS_TABLE} WHERE key = ?", [key]) if table_exists(con, FOLDS_TABLE)
                else pl.DataFrame())
    if rows.is_empty():
        raise KeyError(f"fold {key!r} is not in {FOLDS_TABLE}: materialize ref/folds first")
    return Fold.from_dict(rows.row(0, named=True))


def resolve_fold(wh: Warehouse, key: str) -> Fold:
    """:func:`read_fold`, or, for a fold the trading calendar now defines but ``ref.folds`` lacks yet (a
    fold partition the new-fold sensor added after a year ended), compute it with
    :func:`ml.folds.pipeline_folds` and store it first. Per-fold assets call this."""
    try:
        return read_fold(wh, key)
    except KeyError:
        from ml.folds import folds_frame, get_fold, pipeline_folds
        from warehouse.ingest import read_calendar

        try:
            fold = get_fold(pipeline_folds(read_calendar(wh)), key)
        except KeyError:
            raise KeyError(f"fold {key!r} is not in {FOLDS_TABLE} and the trading calendar does not define it: "
                           "materialize ref/folds first") from None
        write_folds(wh, folds_frame([fold]))
        return fold
