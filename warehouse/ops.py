"""``ops.*``: operational records (failed runs, drift checks, input freshness)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from warehouse.db import Warehouse, query_pl, transaction


def record_run_failure(wh: Warehouse, run_id: str, job_name: str, partition_key: str | None, tags: dict,
                       failed_at: datetime, failed_steps: list[str], message: str) -> None:
    """Insert (or refresh) the failure record of ``run_id`` in ``ops.run_failures``."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    row = [run_id, job_name, partition_key, tags.get("regimeflow/trigger"), json.dumps(tags, sort_keys=True),
           failed_at, failed_steps, message[:4000], now]

    def refresh(con) -> None:
        with transaction(con):
            con.execute("DELETE FROM ops.run_failures WHERE run_id = ?", [run_id])  # no keys on a DuckLake
            con.execute("INSERT INTO ops.run_failures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    with wh.write() as con:
        wh.retry_conflicts(lambda: refresh(con), "ops.run_failures")


def read_run_failures(wh: Warehouse):
    with wh.read() as con:
        return query_pl(con, "SELECT * FROM ops.run_failures ORDER BY failed_at")


def latest_drift_check(wh: Warehouse) -> dict | None:
    """The newest ``ops.drift_checks`` row (written by the ``monitoring/drift`` asset), or None."""
    from warehouse.db import table_exists

    with wh.read() as con:
        if not table_exists(con, "ops.drift_checks"):
            return None
        rows = query_pl(con, "SELECT * FROM ops.drift_checks ORDER BY evaluated_at DESC LIMIT 1")
    return rows.row(0, named=True) if rows.height else None


def stale_inputs(wh: Warehouse):
    """The stale rows of ``ops.input_freshness`` (most sessions behind first); empty when none or no table yet."""
    import polars as pl

    from warehouse.db import table_exists

    if not wh.exists():
        return pl.DataFrame()
    with wh.read() as con:
        if not table_exists(con, "ops.input_freshness"):
            return pl.DataFrame()
        return query_pl(con, "SELECT * FROM ops.input_freshness WHERE stale "
                        "ORDER BY blocks_decision DESC, sessions_behind DESC, input")
