"""Analysts query the published snapshot from another process while the pipeline writes."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import duckdb
import polars as pl
import pytest

from ml.data.market import MarketData
from warehouse import ingest as wi

READER = textwrap.dedent(
    """
    import json, sys, time, duckdb
    snapshot, stop_file, out = sys.argv[1:4]
    results = []
    errors = []
    import os
    while not os.path.exists(stop_file):
        t0 = time.time()
        try:
            con = duckdb.connect(snapshot, read_only=True)
            n, versions, close_sum = con.execute(
                "SELECT count(*), count(DISTINCT ingested_at), sum(close) FROM raw.bars").fetchall()[0]
            con.close()
            results.append({"t0": t0, "t1": time.time(), "n": n, "versions": versions, "close_sum": close_sum})
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.005)
    json.dump({"results": results, "errors": errors}, open(out, "w"))
    """
)


@pytest.mark.slow
def test_analyst_reads_snapshot_while_pipeline_writes(tmp_path, warehouse):
    from datetime import date

    from ml.data.synthetic import generate_market
    from ml.data.universe import Universe

    base = generate_market(Universe(history_start=date(2005, 1, 1)), seed=11)
    wi.ingest_market(warehouse, base, run_id="v0")
    assert warehouse.publish_if_written()  # what the end of a run does: the first snapshot
    stop, out = tmp_path / "stop", tmp_path / "reader.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(warehouse.snapshot_path), str(stop), str(out)])
    writes = []
    try:
        time.sleep(0.5)
        for k in range(1, 5):  # every batch rewrites every row: a partial state would be visible as 2 stamps
            bars = base.bars.with_columns((pl.col("close") * (1 + k / 100)).alias("close"))
            batch = MarketData(bars, base.index_bars, base.sectors, "synthetic")
            t0 = time.time()
            res = wi.ingest_market(warehouse, batch, run_id=f"v{k}").by_table()["raw.bars"]
            warehouse.publish_if_written()  # one run = one write + one publish
            writes.append((t0, time.time()))
            assert res.updated == base.bars.height
            # while the pipeline holds the primary file, nobody else can even open it read-only
        time.sleep(0.3)
    finally:
        stop.touch()
        reader.wait(timeout=60)
    report = json.loads(out.read_text())
    assert report["errors"] == []
    results = report["results"]
    assert len(results) > 20
    assert all(r["n"] == base.bars.height and r["versions"] == 1 for r in results)
    during = [r for r in results if any(w0 <= r["t0"] and r["t1"] <= w1 for w0, w1 in writes)]
    assert during, "no analyst query ran while a write was in progress"
    assert len({round(r["close_sum"], 3) for r in results}) >= 2  # saw successive published versions


def test_primary_file_is_locked_during_a_write(warehouse, small_market):
    """Why the snapshot exists: a second process cannot open the primary while it is being written."""
    wi.ingest_market(warehouse, small_market, run_id="r1")
    warehouse.publish_if_written()
    with warehouse.write():
        probe = subprocess.run(
            [sys.executable, "-c", f"import duckdb; duckdb.connect({str(warehouse.path)!r}, read_only=True)"],
            capture_output=True, text=True,
        )
        assert probe.returncode != 0 and "lock" in probe.stderr.lower()
        snap = duckdb.connect(str(warehouse.snapshot_path), read_only=True)
        assert snap.execute("SELECT count(*) FROM raw.bars").fetchall()[0][0] == small_market.bars.height
        snap.close()
