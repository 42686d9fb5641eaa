"""The warehouse as a DuckLake (``warehouse/lake.py``): a fold run's outputs on a lake equal the file
warehouse's bit for bit, and two Celery workers write one lake (catalog in PostgreSQL) while an analyst reads it."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pytest

import local_stack
from test_scale_out import FOLDS, PROFILE, _cli, _differences, _fold_runs, _of_type, _volatile



def _outputs(wh) -> tuple[dict, dict]:
    """Every eval / models / regimes table (run-time columns dropped, sorted) and every artifact, loaded."""
    from ml.artifacts import load_joblib, load_json, load_torch
    from warehouse.db import query_pl

    tables = {}
    with wh.read() as con:
        names = con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = "
                            "current_database() AND schema_name IN ('eval', 'models', 'regimes')").fetchall()
        for (name,) in names:
            frame = query_pl(con, f"SELECT * FROM {name}")
            keep = [c for c in frame.columns if not _volatile(c) and not (name == "models.artifacts" and c == "meta")]
            tables[name] = frame.select(keep).sort(keep, nulls_last=True)
        rows = con.execute("SELECT fold, kind, path, sha256 FROM models.artifacts").fetchall()
    loaders = {".pt": load_torch, ".joblib": load_joblib, ".json": load_json}
    root = wh.path.parent / "artifacts"
    artifacts = {(fold, kind): b"" if (root / rel).stat().st_size == 0 else loaders[(root / rel).suffix](root / rel, sha)
                 for fold, kind, rel, sha in rows}
    return tables, artifacts


def _assert_equal(ours: tuple[dict, dict], theirs: tuple[dict, dict]) -> None:
    assert ours[0].keys() == theirs[0].keys() and len(ours[0]) > 30
    for name in ours[0]:
        assert ours[0][name].equals(theirs[0][name]), name
    assert ours[1].keys() == theirs[1].keys() and len(ours[1]) >= 9
    for key in ours[1]:
        assert _differences(ours[1][key], theirs[1][key]) == [], key


def _warehouse(env: dict[str, str]):
    from infra.resources import WarehouseResource

    return WarehouseResource(path=env["REGIMEFLOW_WAREHOUSE"], lake_catalog=env.get("REGIMEFLOW_LAKE_CATALOG")).get()


def test_ingest_on_a_lake_equals_the_file_warehouse_and_is_idempotent(tmp_path, warehouse, small_market):
    """Ingestion's upserts (UPDATE + INSERT by key: a lake has no keys) on a file-catalog lake store what the file
    warehouse stores; a second ingest changes nothing; readers attach read-only and see the commit."""
    from warehouse import ingest as wi
    from warehouse.db import query_pl, schema_sql
    from warehouse.lake import LakeWarehouse, analyst_sql, lake_schema_sql

    assert "PRIMARY KEY" in schema_sql()
    assert "PRIMARY KEY" not in lake_schema_sql().upper()
    lake = LakeWarehouse(str(tmp_path / "lake" / "catalog.ducklake"), tmp_path / "lake" / "wh.duckdb")
    assert not lake.exists()
    first = wi.ingest_market(lake, small_market, run_id="r1").by_table()
    assert lake.exists() and first["raw.bars"].inserted == small_market.bars.height
    wi.ingest_market(warehouse, small_market, run_id="r1")
    counts = wi.table_counts(lake)
    assert counts == wi.table_counts(warehouse) and counts["raw.bars"] == small_market.bars.height
    second = wi.ingest_market(lake, small_market, run_id="r2").by_table()
    assert second["raw.bars"].inserted == 0 and second["raw.bars"].updated == 0
    sql = "SELECT * EXCLUDE (ingested_at) FROM raw.bars ORDER BY ticker, date"
    with warehouse.read() as con:
        ref = query_pl(con, sql)
    con = lake.connect_snapshot()  # the analysts' read-only attach
    try:
        assert query_pl(con, sql).equals(ref)
        with pytest.raises(Exception, match="read-only|read only"):
            con.execute("DELETE FROM raw.bars")
    finally:
        con.close()
    analyst = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:  # the statements `python -m warehouse.lake` prints for the duckdb CLI
        analyst.execute(analyst_sql(lake.catalog, lake.data_path))
        assert analyst.execute("SELECT count(*) FROM raw.bars").fetchone()[0] == small_market.bars.height
    finally:
        analyst.close()


@pytest.fixture
def postgres_catalog(tmp_path):
    """A throwaway PostgreSQL server; yields (server, the lake's ``postgres:`` catalog string)."""
    lacking = local_stack.missing()
    if lacking:
        pytest.skip(f"needs {', '.join(lacking)}")
    pg = local_stack.Postgres().start()
    try:
        yield pg, f"postgres:dbname={pg.database} host=127.0.0.1 port={pg.port} user={pg.user}"
    finally:
        pg.stop()


def test_an_unreachable_catalog_is_an_error_not_an_empty_warehouse(tmp_path, monkeypatch, capsys):
    """A catalog file not created yet is "no warehouse yet"; a Postgres catalog nobody answers for raises, so that
    `regimeflow run` never mistakes an outage for an empty lake and starts over."""
    import socket

    from orchestration import cli
    from warehouse.lake import LakeCatalogUnreachable, LakeWarehouse

    assert not LakeWarehouse(str(tmp_path / "new.ducklake"), tmp_path / "wh" / "regimeflow.duckdb").exists()
    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    catalog = f"postgres:dbname=regimeflow host=127.0.0.1 port={port} user=postgres connect_timeout=2"
    lake = LakeWarehouse(catalog, tmp_path / "wh" / "regimeflow.duckdb")
    with pytest.raises(LakeCatalogUnreachable, match="cannot be reached"):
        lake.exists()
    with pytest.raises(LakeCatalogUnreachable, match="cannot be reached"), lake.write():
        pass
    monkeypatch.setenv("REGIMEFLOW_WAREHOUSE", str(tmp_path / "wh" / "regimeflow.duckdb"))
    monkeypatch.setenv("REGIMEFLOW_LAKE_CATALOG", catalog)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REGIMEFLOW_SOURCE", "synthetic")
    monkeypatch.setenv("REGIMEFLOW_EXECUTOR", "in_process")  # `run` sets it in os.environ: restored at teardown
    assert cli.main(["run", "--folds", "none"]) == 2  # before any run starts
    assert "cannot be reached" in capsys.readouterr().err and not (tmp_path / "home" / "storage").exists()


def test_a_commit_that_conflicts_with_another_writer_is_retried(tmp_path, postgres_catalog, caplog):
    """Two writers replacing their own fold's rows of one table conflict in DuckLake (the second commit fails:
    "attempting to insert into table … but another transaction has deleted from it"); the write is retried
    and both folds end up stored once, as written."""
    from warehouse.db import transaction
    from warehouse.lake import LakeWarehouse

    lake = LakeWarehouse(postgres_catalog[1], tmp_path / "wh.duckdb")
    with lake.write() as con:
        con.execute("CREATE TABLE main.t (fold VARCHAR NOT NULL, x DOUBLE)")
        con.execute("INSERT INTO main.t VALUES ('a', 1), ('b', 2)")
    with lake.write() as ours, lake.write() as theirs:
        attempts = []

        def replace_fold_b() -> None:
            attempts.append(len(attempts) + 1)
            with transaction(ours):
                ours.execute("DELETE FROM main.t WHERE fold = 'b'")
                ours.execute("INSERT INTO main.t VALUES ('b', ?)", [20.0 + len(attempts)])
                if len(attempts) == 1:  # meanwhile another writer commits its replacement of fold a
                    with transaction(theirs):
                        theirs.execute("DELETE FROM main.t WHERE fold = 'a'")
                        theirs.execute("INSERT INTO main.t VALUES ('a', 10)")

        with caplog.at_level("WARNING", logger="warehouse.lake"):
            lake.retry_conflicts(replace_fold_b, "fold b")
        assert attempts == [1, 2]
        assert any("commit conflict (fold b)" in r.getMessage() for r in caplog.records)
        assert ours.execute("SELECT fold, x FROM main.t ORDER BY fold").fetchall() == [("a", 10.0), ("b", 22.0)]

        def always_conflicts() -> None:
            raise duckdb.TransactionException("Transaction conflict - attempting to delete from file")

        with pytest.raises(duckdb.TransactionException, match="conflict"), \
                pytest.MonkeyPatch.context() as mp:
            mp.setattr("warehouse.lake.time.sleep", lambda s: None)
            lake.retry_conflicts(always_conflicts)
        with pytest.raises(duckdb.TransactionException, match="other"):  # not a conflict: not retried
            lake.retry_conflicts(lambda: (_ for _ in ()).throw(duckdb.TransactionException("other")))


@pytest.mark.slow
def test_a_fold_run_on_a_lake_equals_the_file_warehouse(tmp_path, small_fold_reference):
    """``regimeflow run --folds 2013,2014`` in-process on a lake with a catalog file equals the same run on the
    file warehouse (conftest's ``small_fold_reference``) bit for bit."""
    profile = tmp_path / "small.yaml"
    profile.write_text(PROFILE)
    lake_env = {"REGIMEFLOW_WAREHOUSE": str(tmp_path / "lake" / "wh.duckdb"), "DAGSTER_HOME": str(tmp_path / "h"),
                "REGIMEFLOW_LAKE_CATALOG": str(tmp_path / "lake" / "catalog.ducklake")}
    done = _cli(["run", "--source", "synthetic", "--profile", str(profile), "--folds", FOLDS], lake_env, tmp_path,
                tmp_path / "lake.log")
    assert done.returncode == 0, (tmp_path / "lake.log").read_text()[-4000:]
    lake = _warehouse(lake_env)
    assert lake.backend == "ducklake" and not Path(lake_env["REGIMEFLOW_WAREHOUSE"]).exists()  # no DuckDB file
    assert any(lake.data_path.rglob("*.parquet"))
    _assert_equal(_outputs(lake), _outputs(_warehouse(small_fold_reference["env"])))


class _LakeReader(threading.Thread):
    """An analyst querying the lake (read-only attach) every 0.2 s."""

    def __init__(self, wh):
        super().__init__(daemon=True)
        self.wh, self.stop, self.queries, self.errors = wh, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                con = self.wh.connect_snapshot()
                try:
                    con.execute("SELECT count(*) FROM raw.bars").fetchall()
                    con.execute("SELECT count(*) FROM duckdb_tables()").fetchall()
                finally:
                    con.close()
                self.queries += 1
            except Exception as exc:  # noqa: BLE001 - every failure is what the test reports
                self.errors.append(repr(exc))
            time.sleep(0.2)


@pytest.mark.slow
def test_two_celery_workers_write_one_lake_while_an_analyst_reads(tmp_path, monkeypatch, small_fold_reference):
    """The cluster shape on a lake: Postgres holds the Dagster instance and the lake's catalog; two fold runs'
    steps run on two Celery workers writing the lake concurrently (no writers' lock); an analyst reads
    throughout; the outputs equal the in-process run on the file warehouse (``small_fold_reference``) bit for
    bit."""
    lacking = local_stack.missing()
    if lacking:
        pytest.skip(f"needs {', '.join(lacking)}")
    profile = tmp_path / "small.yaml"
    profile.write_text(PROFILE)
    common = ["run", "--source", "synthetic", "--profile", str(profile)]
    pg = local_stack.Postgres().start()
    redis = local_stack.Redis(tmp_path / "redis").start()
    workers = []
    try:
        stack = local_stack.cluster_env(pg, redis, tmp_path / "home")
        lake_env = {**stack, "REGIMEFLOW_WAREHOUSE": str(tmp_path / "lake" / "wh.duckdb"),
                    "REGIMEFLOW_LAKE_CATALOG": f"postgres:dbname={pg.database} host=127.0.0.1 port={pg.port} "
                                               f"user={pg.user}"}
        workers = [local_stack.CeleryWorker(f"w{i}", tmp_path / "workers", lake_env).start() for i in (1, 2)]
        done = _cli([*common, "--folds", "none"], lake_env, tmp_path, tmp_path / "prep.log")
        assert done.returncode == 0, (tmp_path / "prep.log").read_text()[-4000:]
        lake = _warehouse(lake_env)
        reader = _LakeReader(lake)
        reader.start()
        done = _cli([*common, "--folds", FOLDS, "--executor", "celery"], lake_env, tmp_path,
                    tmp_path / "celery.log")
        reader.stop.set()
        reader.join(10)
        assert done.returncode == 0, (tmp_path / "celery.log").read_text()[-5000:]
        assert reader.queries > 10 and not reader.errors, reader.errors[:3]
        import dagster as dg

        pids = {p for w in workers for p in w.pool_pids()}
        fold_runs = _fold_runs(stack, monkeypatch)
        assert sorted(r.tags["dagster/partition"] for r, _ in fold_runs) == ["2013", "2014"]
        for _, logs in fold_runs:  # every step ran in a worker's process, none in this one or the launcher
            starts = _of_type(logs, dg.DagsterEventType.STEP_START)
            assert len(starts) >= 14 and {e.dagster_event.pid for e in starts} <= pids
        _assert_equal(_outputs(lake), _outputs(_warehouse(small_fold_reference["env"])))
    finally:
        for w in workers:
            w.stop()
        redis.stop()
        pg.stop()
