"""Warehouse writes: idempotent upserts, corrected bars, one-transaction rollback, source guard, ingest log."""
from __future__ import annotations

import polars as pl
import pytest

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


def test_snapshot_is_published_after_write(warehouse, small_market):
    wi.ingest_market(warehouse, small_market, run_id="r1")
    con = warehouse.connect_snapshot()
    try:
        assert scalar(con, "SELECT count(*) FROM raw.bars") == small_market.bars.height
        with pytest.raises(Exception):
            con.execute("DELETE FROM raw.bars")  # read-only
    finally:
        con.close()


def test_write_many_is_all_or_nothing(warehouse):
    from warehouse.tables import fold_write, read_table, write_many

    a = pl.DataFrame({"strategy": ["x"], "value": [1.0]})
    write_many(warehouse, [fold_write("eval.t1", a, "f1", ["strategy"]), fold_write("eval.t2", a, "f1", ["strategy"])])
    dup = pl.DataFrame({"strategy": ["y", "y"], "value": [2.0, 3.0]})  # violates the primary key
    with pytest.raises(Exception):
        write_many(warehouse, [fold_write("eval.t1", a.with_columns(pl.lit(9.0).alias("value")), "f1", ["strategy"]),
                               fold_write("eval.t2", dup, "f1", ["strategy"])])
    assert read_table(warehouse, "eval.t1")["value"].to_list() == [1.0]
    assert read_table(warehouse, "eval.t2")["strategy"].to_list() == ["x"]
