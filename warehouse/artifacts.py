"""``models.artifacts``: model files on disk (weights, fitted transforms, configs) referenced by fold and kind."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from warehouse.db import Warehouse
from warehouse.tables import read_table, write_replacing

ARTIFACTS_TABLE = "models.artifacts"


def record_artifact(wh: Warehouse, fold: str, kind: str, path: Path, sha256: str, meta: dict | None = None) -> None:
    """Register (or replace) the artifact of ``kind`` for ``fold``; ``meta`` is stored as JSON."""
    frame = pl.DataFrame({
        "fold": [fold], "kind": [kind], "path": [str(Path(path).absolute())], "sha256": [sha256],
        "meta": [json.dumps(meta or {}, default=str)],
        "created_at": [datetime.now(timezone.utc).replace(tzinfo=None)],
    })
    write_replacing(wh, ARTIFACTS_TABLE, frame, ["fold", "kind"],
                    "Model artifacts on disk per fold and kind, with SHA-256 and metadata (JSON).",
                    "fold = ? AND kind = ?", [fold, kind])


def artifact(wh: Warehouse, fold: str, kind: str) -> dict:
    rows = read_table(wh, ARTIFACTS_TABLE, "WHERE fold = ? AND kind = ?", [fold, kind])
    if rows.is_empty():
        raise KeyError(f"no {kind} artifact for fold {fold!r} in {ARTIFACTS_TABLE}: materialize it first")
    return rows.row(0, named=True)


def newest_fold_with(wh: Warehouse, kind: str) -> str | None:
    """The fold with the latest training window (train_end, then test_end) that has an artifact of
    ``kind`` (e.g. ``policy_ppo``), or None. This is the fold the daily decision deploys."""
    from warehouse.db import query_pl, table_exists

    with wh.read() as con:
        if not (table_exists(con, ARTIFACTS_TABLE) and table_exists(con, "ref.folds")):
            return None
        rows = query_pl(con, f"""SELECT a.fold FROM {ARTIFACTS_TABLE} a JOIN ref.folds f ON f.key = a.fold
                                 WHERE a.kind = ? ORDER BY f.train_end DESC, f.test_end DESC LIMIT 1""", [kind])
    return rows["fold"][0] if rows.height else None
