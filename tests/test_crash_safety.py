"""Crash safety, proven: real processes are SIGKILLed in the middle of their warehouse writes.

Every test starts real child processes (this file run as a script, ``python tests/test_crash_safety.py <mode>``)
and kills them with SIGKILL - no ``finally``, no ``atexit``, no DuckDB shutdown. "In the middle" is made
deterministic with a marker-file handshake: the child wraps one write function (the ingestion's upsert, the
catalog's ``replace_rows``, the copy-on-write copy, the publish rename) so that right after the real call -
rows written inside the still open transaction - it writes the marker (what it sees inside the transaction)
and stalls; the parent waits for the marker, then kills it. Afterwards the warehouse must open (a new write
session: the DuckDB WAL replays, the fcntl lock died with the process), hold exactly the previous committed
rows (a hash of every table), and the analyst snapshot must be byte-identical and open read-only with the
same rows. Each child runs under a hard timeout, so the suite never hangs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)  # a last guard; every child wait below has its own, shorter timeout
HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
STALL_S = 120.0  # how long a child waits at its kill point (the parent kills it long before)
START_TIMEOUT_S = 120.0  # child start-up + work until its kill point (dagster imports on 2 busy cores)

# the committed state holds 2020; the killed batch loads 2008-2020 with other prices: it updates every stored
# bar and inserts ~142k new ones, more than DuckDB's row group (122,880 rows), so the open transaction has
# already written blocks into the primary file (DuckDB's optimistic writes) when it is killed
INGEST_COMMITTED = {"history_start": "2020-01-01", "history_end": "2020-12-31"}
INGEST_BATCH = {"history_start": "2008-01-01", "history_end": "2020-12-31"}
FOLD_UNIVERSE = {"include_stocks": False, "sector_etfs": ["XLB", "XLE", "XLF", "XLK", "XLV"],
                 "history_start": "2008-01-01", "history_end": "2013-12-31"}


# ----------------------------------------------------------------------------------------------- helpers

def table_hashes(con) -> dict[str, tuple[int, str]]:
    """``{schema.table: (rows, md5 of the sorted rows as text)}`` of every base table: order-independent,
    exact (every column of every row, timestamps included)."""
    from warehouse.db import quote_ident

    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary "
                         "ORDER BY ALL").fetchall()
    out = {}
    for schema, table in tables:
        name = f"{quote_ident(schema)}.{quote_ident(table)}"
        out[f"{schema}.{table}"] = tuple(con.execute(
            f"SELECT count(*), md5(coalesce(string_agg(r, chr(10) ORDER BY r), '')) "
            f"FROM (SELECT CAST(x AS VARCHAR) AS r FROM {name} AS x)").fetchall()[0])
    return out


def state(wh) -> dict:
    """What must survive a crash: every table of the primary (read through a pipeline connection), and
    the analyst snapshot's bytes and tables (opened read-only, as analysts do)."""
    from ml.artifacts import sha256_file

    with wh.read() as con:
        primary = table_hashes(con)
    snap = wh.connect_snapshot()
    try:
        snapshot = table_hashes(snap)
        try:
            snap.execute("CREATE TABLE main.crash_probe (x INTEGER)")
            writable = True
        except Exception:  # noqa: BLE001 - duckdb raises its own error kinds for a read-only database
            writable = False
    finally:
        snap.close()
    return {"primary": primary, "snapshot": snapshot, "snapshot_sha256": sha256_file(wh.snapshot_path),
            "snapshot_writable": writable}


def assert_previous_state(wh, before: dict) -> None:
    """The warehouse opens (a write session first: WAL replay and the lock must not block) and holds
    exactly ``before``; the snapshot is byte-identical, read-only and holds the same rows."""
    t0 = time.monotonic()
    with wh.write() as con:  # must not wait for the dead writer's lock
        con.execute("SELECT 1").fetchall()
    assert time.monotonic() - t0 < 5.0, "the dead writer's lock blocked the next write session"
    after = state(wh)
    assert after["primary"].keys() == before["primary"].keys()
    for table, value in before["primary"].items():
        assert after["primary"][table] == value, f"{table} changed by a killed, uncommitted write"
    assert after["snapshot_sha256"] == before["snapshot_sha256"], "the published snapshot's bytes changed"
    assert after["snapshot"] == before["snapshot"]
    assert after["snapshot_writable"] is False


def _log_tail(log: Path, n: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "(no output)"


@contextmanager
def child(tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None):
    """A child process running this file in ``mode`` (output to ``<tmp>/<name>.log``); killed with its whole
    process group at exit, whatever happened."""
    log = tmp_path / f"{name}.log"
    environ = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(HERE), *args], cwd=tmp_path, env=environ, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    try:
        yield proc
    finally:
        if proc.returncode is None:  # not reaped yet: the pid (and group id) is still ours
            _kill_group(proc)
        proc.wait(timeout=30)


def wait_for_marker(proc, marker: Path, timeout: float = START_TIMEOUT_S) -> dict:
    """The JSON the child wrote at its kill point (it is stalled there now)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the child exited ({proc.returncode}) before its kill point:\n{_log_tail(proc.log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the child did not reach its kill point in {timeout:.0f}s:\n{_log_tail(proc.log)}")
        time.sleep(0.05)
    return json.loads(marker.read_text())


def _kill_group(proc) -> None:
    """SIGKILL whatever the child started (its own session: the group id is its pid); call before reaping it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def sigkill(proc) -> None:
    """SIGKILL the child (then anything it started), and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    _kill_group(proc)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def kill_at_its_kill_point(tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run a child (``args`` = mode and its arguments; the marker path is appended), wait until it stalls at its
    kill point inside the write, SIGKILL it; returns what it recorded there."""
    marker = tmp_path / f"{name}.marker"
    with child(tmp_path, name, *args, str(marker), env=env) as proc:
        inside = wait_for_marker(proc, marker)
        sigkill(proc)
    return inside


def finish(proc, timeout: float = START_TIMEOUT_S) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the child did not finish in {timeout:.0f}s:\n{_log_tail(proc.log)}") from None


def _stall(marker: Path, payload: dict) -> None:
    """In a child: announce the kill point (atomically: the parent never reads half a marker) and wait."""
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(payload, default=str))
    os.replace(tmp, marker)
    time.sleep(STALL_S)
    raise SystemExit(f"not killed within {STALL_S}s")


def _universe(spec: dict):
    from ml.data.universe import Universe

    kw = dict(spec)
    kw["history_start"], kw["history_end"] = (date.fromisoformat(kw[k]) for k in ("history_start", "history_end"))
    return Universe(**kw)


def prices_digest(con, table: str, key: str) -> str:
    """Hash of every ``(key, date, close)`` of a bars table (the prices, without the ingestion timestamps)."""
    return con.execute(f"SELECT md5(string_agg(concat_ws('|', {key}, date, close), ',' ORDER BY {key}, date)) "
                       f"FROM {table}").fetchall()[0][0]


def fold_digest(con, fold: str) -> tuple[int, str]:
    """Rows and hash of one fold's ``regimes.sector_hmm`` rows."""
    return tuple(con.execute("SELECT count(*), md5(coalesce(string_agg(r, chr(10) ORDER BY r), '')) FROM "
                             "(SELECT CAST(x AS VARCHAR) AS r FROM regimes.sector_hmm AS x WHERE fold = ?)",
                             [fold]).fetchall()[0])


def fold_resources(wh_path: Path, hmm_seed: int) -> dict:
    from infra.resources import FeatureStoreResource, MarketDataResource, RegimeResource, WarehouseResource
    from orchestration.definitions import storage_resources

    return {**storage_resources(WarehouseResource(path=str(wh_path), lock_timeout_s=60)),
            "market": MarketDataResource(source="synthetic"), "features": FeatureStoreResource(),
            "regimes": RegimeResource(hmm_restarts=1, hmm_seed=hmm_seed)}


def materialize_fold(wh_path: Path, fold: str, hmm_seed: int):
    """A real per-fold Dagster run: ``regimes/sector_hmm`` of ``fold`` through the model IO manager (artifact
    file + four tables + the artifact record in one transaction; the snapshot is published at teardown)."""
    import dagster as dg

    from assets import folds, ingestion, regimes
    from assets.keys import REGIMES_SECTOR_HMM
    from infra.partitions import FOLDS

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(FOLDS, [fold])
    return dg.materialize(dg.load_assets_from_modules([ingestion, folds, regimes]), selection=[REGIMES_SECTOR_HMM],
                          partition_key=fold, resources=fold_resources(wh_path, hmm_seed), instance=instance,
                          raise_on_error=False)


# ------------------------------------------------------------------------------------ ingestion killed

def test_ingestion_killed_mid_write_leaves_the_previous_state_and_snapshot(tmp_path):
    """``regimeflow run --job ingest`` (a real Dagster ingestion: new prices for every stored bar, 12 more
    years of bars) is SIGKILLed after ``raw.bars`` was upserted inside the batch's open transaction (index
    bars, sectors and the ingest log not yet written; DuckDB had already written part of the new rows into the
    primary file). After the kill: the warehouse opens, every table holds the previous rows, the snapshot is
    untouched; the same ingestion, run again, commits and publishes."""
    from ml.data.synthetic import generate_market
    from warehouse import Warehouse
    from warehouse import ingest as wi
    from warehouse.db import scalar

    wh = Warehouse(tmp_path / "data" / "regimeflow.duckdb", lock_timeout_s=60)
    wi.ingest_market(wh, generate_market(_universe(INGEST_COMMITTED), seed=7), run_id="committed")
    wi.rebuild_trading_calendar(wh, "SPY")
    assert wh.publish_if_written()
    with wh.write() as con:  # a committed write after the publish: the primary has its own file and a WAL
        con.execute("UPDATE raw.ingest_log SET message = 'committed after the publish'")
    before = state(wh)
    assert before["primary"] != before["snapshot"]
    primary_bytes = wh.path.stat().st_size

    profile = tmp_path / "ingest.yaml"
    profile.write_text(json.dumps({"resources": {"market": {"config": {
        "source": "synthetic", "synthetic_seed": 9, **INGEST_BATCH}}}}))  # JSON is YAML
    env = {"REGIMEFLOW_WAREHOUSE": str(wh.path), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    inside = kill_at_its_kill_point(tmp_path, "ingest-killed", "ingest", str(profile), env=env)
    assert_previous_state(wh, before)
    # the child really was mid-write: every stored bar rewritten and >1 row group of new bars inserted inside
    # its open transaction, part of it already in the primary file; index bars, sectors, ingest log not yet
    assert inside["table"] == "raw.bars" and inside["inserted"] > 122_880
    assert inside["updated"] == before["primary"]["raw.bars"][0]
    assert inside["file_bytes"][wh.path.name] > primary_bytes, "the killed transaction wrote nothing to the file"
    with wh.read() as con:
        assert inside["bars"] != prices_digest(con, "raw.bars", "ticker")
        assert inside["index_bars"] == prices_digest(con, "raw.index_bars", "symbol")
        assert inside["ingest_log_rows"] == scalar(con, "SELECT count(*) FROM raw.ingest_log") == 3

    with child(tmp_path, "ingest-rerun", "ingest", str(profile), "-", env=env) as proc:  # no kill point
        assert finish(proc) == 0, _log_tail(proc.log)
    after = state(wh)
    assert after["primary"]["raw.bars"] != before["primary"]["raw.bars"]
    assert after["snapshot"]["raw.bars"] == after["primary"]["raw.bars"]  # published by the run's end
    assert after["snapshot_sha256"] != before["snapshot_sha256"] and after["snapshot_writable"] is False
    with wh.read() as con:
        assert prices_digest(con, "raw.bars", "ticker") == inside["bars"]  # what the killed run was writing
        assert scalar(con, "SELECT count(*) FROM raw.ingest_log WHERE status = 'ok'") == 3 + 3


# --------------------------------------------------------------------------------------- fold killed

def test_fold_run_killed_mid_write_leaves_the_folds_previous_rows_and_snapshot(tmp_path):
    """A real fold run (``regimes/sector_hmm`` of fold 2013 through the model IO manager, another HMM seed) is
    SIGKILLed after ``regimes.sector_hmm`` had its fold rows deleted and the new ones inserted inside the
    materialization's transaction (summary, states, transitions and the artifact record not yet written).
    After the kill the fold's previous rows, artifact record and model file are in force, the snapshot is
    untouched, and the fold runs again."""
    from ml.artifacts import sha256_file
    from ml.data.synthetic import generate_market
    from ml.folds import folds_frame, pipeline_folds
    from warehouse import Warehouse
    from warehouse import ingest as wi
    from warehouse.catalog import artifact_records, storage, write_asset

    wh_path = tmp_path / "data" / "regimeflow.duckdb"
    wh = Warehouse(wh_path, lock_timeout_s=60)
    wi.ingest_market(wh, generate_market(_universe(FOLD_UNIVERSE), seed=4), run_id="committed")
    wi.rebuild_trading_calendar(wh, "SPY")
    write_asset(wh, storage(("ref", "folds")), {"main": folds_frame(pipeline_folds(wi.read_calendar(wh)))})
    for fold in ("2012", "2013"):
        assert materialize_fold(wh_path, fold, hmm_seed=1).success
    assert wh.path.samefile(wh.snapshot_path)  # published by the run's teardown (a hard link)
    before = state(wh)
    root = wh.path.parent / "artifacts"
    record = artifact_records(wh, "sector_hmm", ["2013"]).row(0, named=True)
    assert sha256_file(root / record["path"]) == record["sha256"]
    with wh.read() as con:
        committed_fold = fold_digest(con, "2013")

    inside = kill_at_its_kill_point(tmp_path, "fold-killed", "fold", str(wh_path), "2013", "2")
    assert_previous_state(wh, before)
    # mid-write for real: the fold's rows had been replaced by the new model's inside the open transaction
    assert inside["table"] == "regimes.sector_hmm" and inside["fold_rows"] > 0
    assert inside["fold_digest"] != committed_fold
    with wh.read() as con:
        assert fold_digest(con, "2013") == committed_fold
    assert artifact_records(wh, "sector_hmm", ["2013"]).row(0, named=True) == record
    assert sha256_file(root / record["path"]) == record["sha256"]  # the model in force still loads, verified
    # the killed run's model file was written (atomically) before its transaction: it stays, unreferenced
    assert inside["artifact_path"] != record["path"] and (root / inside["artifact_path"]).exists()

    rerun = materialize_fold(wh_path, "2013", hmm_seed=2)
    assert rerun.success
    after = state(wh)
    rec = artifact_records(wh, "sector_hmm", ["2013"]).row(0, named=True)
    assert rec["path"] != record["path"] and sha256_file(root / rec["path"]) == rec["sha256"]
    assert not (root / record["path"]).exists()  # the replaced model file goes once the new record commits
    assert after["primary"]["regimes.sector_hmm"][0] == before["primary"]["regimes.sector_hmm"][0]
    assert after["primary"]["regimes.sector_hmm"] != before["primary"]["regimes.sector_hmm"]
    assert after["snapshot"] == after["primary"] and after["snapshot_sha256"] != before["snapshot_sha256"]


# ------------------------------------------------------------------------------------- two writers

def _rows(wh, table: str = "crash.rows") -> dict[str, int]:
    with wh.read() as con:
        return dict(con.execute(f"SELECT writer, count(*) FROM {table} GROUP BY ALL").fetchall())


def test_a_second_writer_waits_for_the_first_and_nothing_is_lost(tmp_path):
    """Two processes write at once: the second, started while the first holds its write session, logs that it
    waits, gets the lock only after the first's session ended, and commits; both writers' rows are there."""
    from warehouse import Warehouse

    wh = Warehouse(tmp_path / "data" / "regimeflow.duckdb", lock_timeout_s=30)
    first_at, second_at = tmp_path / "first.marker", tmp_path / "second.marker"
    hold = 3.0
    with child(tmp_path, "first", "writer", str(wh.path), "first", "5000", str(hold), "30", str(first_at)) as a:
        first = wait_for_marker(a, first_at)
        with child(tmp_path, "second", "writer", str(wh.path), "second", "7000", "0", "30", str(second_at)) as b:
            assert finish(a) == 0, _log_tail(a.log)
            assert finish(b) == 0, _log_tail(b.log)
    second = json.loads(second_at.read_text())
    first_held_until = float(Path(str(first_at) + ".held_until").read_text())
    assert first["waited_s"] < 1.0
    # the second process (started while the first held the lock) got it only after the first's session ended
    assert second["acquired_at"] > first_held_until and second["waited_s"] > 0.5, (first, second)
    assert "waiting for the warehouse lock" in _log_tail(b.log)
    assert _rows(wh) == {"first": 5000, "second": 7000}


def test_a_second_writer_with_a_short_timeout_fails_clearly_and_a_killed_lock_holder_frees_the_lock(tmp_path):
    """The first writer commits and then holds its write session (outside any transaction). A second one with a
    1 s lock timeout fails with ``WarehouseLockTimeout`` naming the lock file, writing nothing. SIGKILL of the
    holder releases the fcntl lock at once (the next writer does not wait out its timeout) and its committed
    rows - in the WAL only, never checkpointed - are replayed."""
    from warehouse import Warehouse

    wh = Warehouse(tmp_path / "data" / "regimeflow.duckdb", lock_timeout_s=30)
    held_at = tmp_path / "holder.marker"
    with child(tmp_path, "holder", "writer", str(wh.path), "holder", "4000", str(STALL_S), "30", str(held_at)) as a:
        wait_for_marker(a, held_at)
        with child(tmp_path, "impatient", "writer", str(wh.path), "impatient", "10", "0", "1",
                   str(tmp_path / "impatient.marker")) as b:
            rc = finish(b, timeout=60)
        out = _log_tail(b.log)
        assert rc == 1, out
        last = out.strip().splitlines()[-1]
        assert last == (f"warehouse.db.WarehouseLockTimeout: waited 1s for the warehouse lock {wh.path}.lock; "
                        "another pipeline process is writing"), out
        assert not (tmp_path / "impatient.marker").exists()
        assert a.poll() is None  # still holding the lock, outside a transaction
        assert wh.path.with_name(wh.path.name + ".wal").exists()  # its commit is in the WAL only
        sigkill(a)
    t0 = time.monotonic()
    with Warehouse(wh.path, lock_timeout_s=30).write() as con:
        waited = time.monotonic() - t0
        assert con.execute("SELECT count(*) FROM crash.rows WHERE writer = 'holder'").fetchall()[0][0] == 4000
        con.execute("INSERT INTO crash.rows SELECT 'after', range FROM range(3)")
    assert waited < 1.0, f"waited {waited:.1f}s for the lock of a dead process"
    assert _rows(wh) == {"holder": 4000, "after": 3}


# ------------------------------------------------------------------------ copy-on-write and publish

def _published_warehouse(tmp_path: Path):
    from warehouse import Warehouse

    wh = Warehouse(tmp_path / "data" / "regimeflow.duckdb", lock_timeout_s=30)
    with wh.write() as con:
        con.execute("CREATE SCHEMA crash; CREATE TABLE crash.rows (writer VARCHAR, i BIGINT)")
        con.execute("INSERT INTO crash.rows SELECT 'published', range FROM range(200000)")
    wh.publish_snapshot()
    assert wh.path.samefile(wh.snapshot_path)
    return wh


def _temps(wh) -> list[str]:
    return sorted(p.name for p in wh.path.parent.iterdir() if p.name.startswith("."))


def test_killed_during_the_copy_on_write_copy_leaves_primary_and_snapshot_intact(tmp_path):
    """A writer is SIGKILLed halfway through copying the published primary off the snapshot (before the
    rename): primary and snapshot are still the published file, and the next writer removes the dead copy."""
    wh = _published_warehouse(tmp_path)
    before = state(wh)
    inside = kill_at_its_kill_point(tmp_path, "cow", "cow", str(wh.path))
    assert inside["copied_bytes"] < wh.path.stat().st_size
    assert _temps(wh) == [f".{wh.path.name}.{inside['pid']}.tmp"]  # the dead writer's half copy
    assert wh.path.samefile(wh.snapshot_path)
    assert_previous_state(wh, before)
    assert _temps(wh) == []  # removed by the next writer (under the writers' lock)
    with wh.write() as con:
        con.execute("INSERT INTO crash.rows VALUES ('next', 0)")
    assert not wh.path.samefile(wh.snapshot_path) and state(wh)["snapshot_sha256"] == before["snapshot_sha256"]
    assert _rows(wh) == {"published": 200000, "next": 1}


def test_killed_between_the_publish_link_and_its_rename_keeps_the_previous_snapshot(tmp_path):
    """The publish makes a temp hard link to the checkpointed primary, then renames it over the snapshot: a
    SIGKILL in between leaves the previous snapshot in place and the committed rows in the primary; the next
    publish removes the dead temp link (a link keeps a whole old warehouse file alive) and publishes."""
    wh = _published_warehouse(tmp_path)
    before = state(wh)
    inside = kill_at_its_kill_point(tmp_path, "publish", "publish", str(wh.path))
    link = wh.path.parent / f".{wh.snapshot_path.name}.{inside['pid']}.link"
    assert _temps(wh) == [link.name] and link.samefile(wh.path)
    after = state(wh)
    assert after["snapshot_sha256"] == before["snapshot_sha256"] and after["snapshot"] == before["snapshot"]
    assert _rows(wh) == {"published": 200000, "publisher": 1000}  # committed and checkpointed before the link
    wh.publish_snapshot()
    assert _temps(wh) == [] and wh.path.samefile(wh.snapshot_path)
    con = wh.connect_snapshot()
    try:
        assert con.execute("SELECT count(*) FROM crash.rows").fetchall()[0][0] == 201000
    finally:
        con.close()


# ----------------------------------------------------------------------------------- child processes

def _child_ingest(profile: str, marker: str) -> int:
    """``regimeflow run --job ingest`` with a kill point after ``raw.bars`` is upserted (``marker`` "-": none)."""
    if marker != "-":
        import warehouse.ingest as wi
        from warehouse.db import scalar

        real = wi.upsert

        def upsert_then_stall(con, table, frame, keys, **kw):
            counts = real(con, table, frame, keys, **kw)
            if table == "raw.bars":
                _stall(Path(marker), {  # what the open transaction sees
                    "table": table, "updated": counts.updated, "inserted": counts.inserted,
                    "bars": prices_digest(con, "raw.bars", "ticker"),
                    "index_bars": prices_digest(con, "raw.index_bars", "symbol"),
                    "ingest_log_rows": scalar(con, "SELECT count(*) FROM raw.ingest_log"),
                    "file_bytes": {f.name: f.stat().st_size
                                   for f in Path(os.environ["REGIMEFLOW_WAREHOUSE"]).parent.iterdir()},
                })
            return counts

        wi.upsert = upsert_then_stall
    from orchestration.cli import main

    return main(["run", "--job", "ingest", "--source", "synthetic", "--profile", profile])


def _child_fold(wh_path: str, fold: str, seed: str, marker: str) -> int:
    import warehouse.catalog as catalog
    from warehouse.db import scalar

    real = catalog.replace_rows

    def replace_then_stall(con, table, frame, where="", params=None):
        n = real(con, table, frame, where, params)
        if table == "regimes.sector_hmm":
            files = sorted(str(p.relative_to(Path(wh_path).parent / "artifacts"))
                           for p in (Path(wh_path).parent / "artifacts" / fold).glob("sector_hmm-*.json"))
            _stall(Path(marker), {
                "table": table, "fold_rows": n, "fold_digest": fold_digest(con, fold),
                "artifact_path": next(f for f in files if scalar(
                    con, "SELECT count(*) FROM models.artifacts WHERE path = ?", [f]) == 0),
            })
        return n

    catalog.replace_rows = replace_then_stall
    return 0 if materialize_fold(Path(wh_path), fold, int(seed)).success else 1


def _child_writer(path: str, tag: str, rows: str, hold_s: str, lock_timeout_s: str, marker: str) -> int:
    """A write session: commit ``rows`` rows tagged ``tag``, announce it, keep the session (and the lock)
    ``hold_s`` seconds outside any transaction."""
    import logging

    from warehouse import Warehouse

    logging.basicConfig(level=logging.INFO)
    t0 = time.monotonic()
    with Warehouse(path, lock_timeout_s=float(lock_timeout_s)).write() as con:
        waited = time.monotonic() - t0
        con.execute("CREATE SCHEMA IF NOT EXISTS crash; "
                    "CREATE TABLE IF NOT EXISTS crash.rows (writer VARCHAR, i BIGINT)")
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO crash.rows SELECT ?, range FROM range(?)", [tag, int(rows)])
        con.execute("COMMIT")
        tmp = Path(marker + ".tmp")
        tmp.write_text(json.dumps({"waited_s": waited, "acquired_at": time.time(), "pid": os.getpid()}))
        os.replace(tmp, marker)
        time.sleep(float(hold_s))
        Path(marker + ".held_until").write_text(repr(time.time()))  # still inside the session: lock held
    return 0


def _child_cow(path: str, marker: str) -> int:
    """A write session on a published primary, killed halfway through the copy-on-write copy."""
    import shutil

    from warehouse import Warehouse

    def half_copy_then_stall(src, dst, *a, **kw):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        _stall(Path(marker), {"pid": os.getpid(), "copied_bytes": len(data) // 2, "target": str(dst)})

    shutil.copyfile = half_copy_then_stall
    with Warehouse(path).write() as con:
        con.execute("INSERT INTO crash.rows VALUES ('cow', 0)")
    return 0


def _child_publish(path: str, marker: str) -> int:
    """A committed write, then a publish killed between the temp link and its rename over the snapshot."""
    from warehouse import Warehouse

    wh = Warehouse(path)
    with wh.write() as con:
        con.execute("INSERT INTO crash.rows SELECT 'publisher', range FROM range(1000)")
    real = os.replace

    def replace(src, dst, *a, **kw):
        if Path(dst) == wh.snapshot_path:
            _stall(Path(marker), {"pid": os.getpid(), "link": str(src)})
        return real(src, dst, *a, **kw)

    os.replace = replace
    wh.publish_snapshot()
    return 0


if __name__ == "__main__":
    modes = {"ingest": _child_ingest, "fold": _child_fold, "writer": _child_writer, "cow": _child_cow,
             "publish": _child_publish}
    sys.exit(modes[sys.argv[1]](*sys.argv[2:]))
