"""Warehouse writes: idempotent upserts, corrected bars, one-transaction rollback, source guard, ingest log."""
from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from warehouse import Warehouse
from warehouse import ingest as wi
from warehouse.db import query_pl, scalar
from warehouse.upsert import upsert


def _counts(wh):
    return wi.table_counts(wh)


def test_reingest_is_idempotent(warehouse, small_market):
    first = wi.ingest_market(warehouse, small_market, run_id="r1").by_table()
    assert first["raw.bars"].inserted == small_market.bars.height
    before = _counts(warehouse)
    second = wi.ingest_market(warehouse, small_market, run_id="r2").by_table()
    after = _counts(warehouse)
    assert {k: v for k, v in before.items() if k != "raw.ingest_log"} == {
        k: v for k, v in after.items() if k != "raw.ingest_log"
    }
    assert second["raw.bars"].inserted == 0 and second["raw.bars"].updated == 0
    assert second["raw.bars"].unchanged == small_market.bars.height
    with warehouse.read() as con:
        dups = scalar(con, "SELECT count(*) FROM (SELECT ticker, date FROM raw.bars GROUP BY ALL HAVING count(*) > 1)")
        assert dups == 0
        log = query_pl(con, "SELECT run_id, table_name, inserted, updated, status FROM raw.ingest_log ORDER BY ALL")
    assert log.filter(pl.col("run_id") == "r2")["inserted"].sum() == 0
    assert set(log["status"]) == {"ok"}


def test_corrected_bar_overwrites_old_value(warehouse, small_market):
    wi.ingest_market(warehouse, small_market, run_id="r1")
    day = small_market.bars["date"][100]
    fixed = small_market.bars.with_columns(
        pl.when((pl.col("ticker") == "SPY") & (pl.col("date") == day))
        .then(pl.col("close") * 1.01).otherwise(pl.col("close")).alias("close")
    )
    corrected = small_market.__class__(fixed, small_market.index_bars, small_market.sectors, "synthetic")
    res = wi.ingest_market(warehouse, corrected, run_id="r2").by_table()["raw.bars"]
    assert (res.inserted, res.updated) == (0, 1)
    with warehouse.read() as con:
        got = scalar(con, "SELECT close FROM raw.bars WHERE ticker='SPY' AND date=?", [day])
        n = scalar(con, "SELECT count(*) FROM raw.bars")
    assert got == pytest.approx(fixed.filter((pl.col("ticker") == "SPY") & (pl.col("date") == day))["close"].item())
    assert n == small_market.bars.height


def test_failed_batch_rolls_back_every_table(warehouse, small_market, monkeypatch):
    wi.ingest_market(warehouse, small_market, run_id="r1")
    before = _counts(warehouse)
    with warehouse.read() as con:
        spy_before = scalar(con, "SELECT sum(close) FROM raw.bars WHERE ticker='SPY'")
    changed = small_market.bars.with_columns(pl.col("close") * 2)
    batch = small_market.__class__(changed, small_market.index_bars, small_market.sectors, "synthetic")
    calls = {"n": 0}

    def failing_upsert(con, table, frame, keys, **kw):
        calls["n"] += 1
        if table == "ref.sectors":  # fails after bars and index bars were written in this transaction
            raise RuntimeError("disk full (simulated)")
        return upsert(con, table, frame, keys, **kw)

    monkeypatch.setattr(wi, "upsert", failing_upsert)
    with pytest.raises(RuntimeError, match="disk full"):
        wi.ingest_market(warehouse, batch, run_id="r2")
    assert calls["n"] == 3
    after = _counts(warehouse)
    assert after["raw.bars"] == before["raw.bars"]
    with warehouse.read() as con:
        assert scalar(con, "SELECT sum(close) FROM raw.bars WHERE ticker='SPY'") == spy_before
        status = con.execute("SELECT status, message FROM raw.ingest_log WHERE run_id='r2'").fetchall()
    assert status[0][0] == "failed" and "disk full" in status[0][1]


def test_duplicate_keys_in_batch_are_rejected(warehouse, small_market):
    dup = pl.concat([small_market.bars, small_market.bars.head(1)])
    batch = small_market.__class__(dup, small_market.index_bars, small_market.sectors, "synthetic")
    with pytest.raises(ValueError, match="duplicate key"):
        wi.ingest_market(warehouse, batch, run_id="r1")
    assert not warehouse.path.exists() or _counts(warehouse).get("raw.bars", 0) == 0


def test_synthetic_and_real_are_never_mixed(warehouse, small_market):
    wi.ingest_market(warehouse, small_market, run_id="r1")
    real = small_market.__class__(small_market.bars, small_market.index_bars, small_market.sectors, "csv")
    with pytest.raises(wi.SourceMismatchError, match="never mixed"):
        wi.ingest_market(warehouse, real, run_id="r2")


def test_trading_calendar_from_reference_ticker(warehouse, small_market):
    wi.ingest_market(warehouse, small_market, run_id="r1")
    n = wi.rebuild_trading_calendar(warehouse, "SPY")
    cal = wi.read_calendar(warehouse)
    spy_dates = small_market.bars.filter(pl.col("ticker") == "SPY")["date"]
    assert n == cal.len() == spy_dates.len()
    assert cal.to_list() == spy_dates.to_list()
    wi.rebuild_trading_calendar(warehouse, "SPY")  # idempotent
    assert wi.read_calendar(warehouse).len() == n
    with pytest.raises(ValueError, match="no bars"):
        wi.rebuild_trading_calendar(warehouse, "NOPE")


def test_snapshot_is_published_once_per_run_not_per_write(warehouse, small_market):
    wi.ingest_market(warehouse, small_market, run_id="r1")
    wi.rebuild_trading_calendar(warehouse, "SPY")
    assert not warehouse.snapshot_path.exists()  # two write sessions, nothing published yet
    assert warehouse.publish_if_written() is True
    assert warehouse.publish_if_written() is False  # nothing written since
    con = warehouse.connect_snapshot()
    try:
        assert scalar(con, "SELECT count(*) FROM raw.bars") == small_market.bars.height
        with pytest.raises(Exception):
            con.execute("DELETE FROM raw.bars")  # read-only
    finally:
        con.close()
    quiet = Warehouse(warehouse.path, publish_snapshot=False)
    wi.rebuild_trading_calendar(quiet, "SPY")
    assert quiet.publish_if_written() is False  # the caller publishes (regimeflow run: once at the end)


def test_publish_links_and_the_next_write_copies_the_primary_off_the_snapshot(warehouse, small_market):
    from ml.artifacts import sha256_file

    wi.ingest_market(warehouse, small_market, run_id="r1")
    warehouse.publish_if_written()
    assert warehouse.path.samefile(warehouse.snapshot_path)  # published without a copy
    assert not warehouse.path.with_name(warehouse.path.name + ".wal").exists()  # checkpointed first
    published = sha256_file(warehouse.snapshot_path)
    analyst = warehouse.connect_snapshot()  # an analyst holds the published version open
    try:
        with warehouse.write() as con:  # copy-on-write: the primary gets its own file first
            con.execute("DELETE FROM raw.bars WHERE ticker = 'SPY'")
        assert not warehouse.path.samefile(warehouse.snapshot_path)
        assert sha256_file(warehouse.snapshot_path) == published  # the published bytes never change
        assert scalar(analyst, "SELECT count(*) FROM raw.bars") == small_market.bars.height
    finally:
        analyst.close()
    with warehouse.read() as con:
        assert scalar(con, "SELECT count(*) FROM raw.bars WHERE ticker = 'SPY'") == 0
    warehouse.publish_if_written()
    con = warehouse.connect_snapshot()
    try:
        assert scalar(con, "SELECT count(*) FROM raw.bars WHERE ticker = 'SPY'") == 0
    finally:
        con.close()


def test_publish_copies_where_the_filesystem_has_no_hard_links(warehouse, small_market, monkeypatch):
    import os

    wi.ingest_market(warehouse, small_market, run_id="r1")

    def no_links(*_args, **_kwargs):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    warehouse.publish_if_written()
    assert not warehouse.path.samefile(warehouse.snapshot_path)
    con = warehouse.connect_snapshot()
    try:
        assert scalar(con, "SELECT count(*) FROM raw.bars") == small_market.bars.height
    finally:
        con.close()


def test_one_materialization_is_one_transaction(warehouse):
    from warehouse.catalog import storage, write_asset
    from warehouse.tables import read_table

    store = storage(("eval", "fold"))
    a = pl.DataFrame({"strategy": ["x"], "date": [date(2020, 1, 2)], "value": [1.0]})
    m = pl.DataFrame({"strategy": ["x"], "cost_multiplier": [1.0], "value": [1.0]})
    write_asset(warehouse, store, {"main": a, "allocations": a, "metrics": m}, fold="f1")
    dup = pl.concat([a, a])  # violates the primary key of the second table written
    with pytest.raises(Exception):
        write_asset(warehouse, store, {"main": a.with_columns(pl.lit(9.0).alias("value")), "allocations": dup,
                                       "metrics": m}, fold="f1")
    assert read_table(warehouse, "eval.daily_returns")["value"].to_list() == [1.0]
    assert read_table(warehouse, "eval.allocations")["strategy"].to_list() == ["x"]
    write_asset(warehouse, store, {"main": a, "allocations": a, "metrics": m}, fold="f2")
    assert sorted(read_table(warehouse, "eval.daily_returns")["fold"].to_list()) == ["f1", "f2"]
