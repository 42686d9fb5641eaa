"""Connections to the DuckDB warehouse, the writer lock and the analysts' read-only snapshot.

DuckDB allows one writing process per file, and while a process writes no other process may even
open the file. regimeflow therefore keeps two files:

* the **primary** file (``regimeflow.duckdb``), used only by the pipeline. Pipeline processes
  serialise on an ``fcntl`` lock file next to it (exclusive for writes, shared for reads), so two
  Dagster steps never fight over DuckDB's own lock;
* the **analyst snapshot** (``regimeflow_read.duckdb``), published atomically under the writers' lock
  once per Dagster run that wrote (the IO managers' teardown) or once at the end of ``regimeflow run``:
  the primary is checkpointed (no WAL left) and the snapshot becomes a **hard link** to it (a temp link,
  then ``os.replace``). Publishing therefore copies nothing; the copy happens copy-on-write, at the
  next write session: before opening a primary that is still linked to the snapshot read-write, the
  writer copies it to a private file and renames that over the primary, so the published inode is never
  written again. One full copy per run that writes (none for the first run on a new warehouse); on a
  filesystem without hard links the publish falls back to a copy. Every write session commits whole
  materializations, so any published state is a committed one. Analysts open the snapshot read-only at
  any time, also while a run writes; an open connection keeps seeing the version it opened, a new one
  sees the latest published state.

A pipeline process killed at any point (SIGKILL included) leaves the last committed state: an open
transaction is never in the WAL, the ``fcntl`` lock dies with the process, and the copy-on-write copy and the
publish rename go through temp files; the next writer removes a killed writer's temp files under the lock
(``tests/test_crash_safety.py``).
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TypeVar

import duckdb

from ml.artifacts import atomic_copy, atomic_link

log = logging.getLogger(__name__)
T = TypeVar("T")

SNAPSHOT_SUFFIX = "_read"
#: Primary files this process committed writes to since their snapshot was last published.
_UNPUBLISHED: set[Path] = set()
_DEFERRED = [False]


@contextmanager
def deferred_publishing() -> Iterator[None]:
    """Inside: :meth:`Warehouse.publish_if_written` does nothing, so a caller that runs several jobs in this
    process (``regimeflow run``) publishes once at the end instead of once per run."""
    _DEFERRED[0] = True
    try:
        yield
    finally:
        _DEFERRED[0] = False


class WarehouseLockTimeout(TimeoutError):
    """Another pipeline process held the warehouse lock for longer than the timeout."""


class WarehouseVersionError(RuntimeError):
    """The warehouse file was written by a newer DuckDB storage format than the pinned DuckDB reads."""


def connect_file(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect`` on a warehouse file; a file from a newer DuckDB (2.x writes storage v2, which the
    pinned 1.5 cannot read) raises :class:`WarehouseVersionError` saying how to rebuild it."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "newer version of DuckDB" not in str(exc):
            raise
        raise WarehouseVersionError(
            f"{path} was written by a newer DuckDB than this regimeflow's (duckdb {duckdb.__version__}, pinned for "
            "the DuckLake extension wheels). Rebuild it from the raw data with `regimeflow run --fresh` (the "
            "pipeline reproduces its tables bit for bit), or move it aside.") from exc


def default_warehouse_path() -> Path:
    """``$REGIMEFLOW_WAREHOUSE`` or ``./data/warehouse/regimeflow.duckdb`` (relative to the cwd)."""
    env = os.environ.get("REGIMEFLOW_WAREHOUSE")
    return Path(env) if env else Path("data") / "warehouse" / "regimeflow.duckdb"


def schema_sql() -> str:
    return resources.files("warehouse").joinpath("schema.sql").read_text()


class Warehouse:
    """The warehouse at ``path`` (primary) and its analyst snapshot.

    ``lock_timeout_s``: how long a pipeline step waits for another step's write session.
    """

    def __init__(self, path: str | Path | None = None, snapshot_path: str | Path | None = None,
                 lock_timeout_s: float = 900.0, publish_snapshot: bool = True):
        self.path = Path(path) if path is not None else default_warehouse_path()
        self.path = self.path.expanduser().absolute()
        self.snapshot_path = (
            Path(snapshot_path).expanduser().absolute() if snapshot_path is not None
            else self.path.with_name(f"{self.path.stem}{SNAPSHOT_SUFFIX}{self.path.suffix}")
        )
        self.lock_timeout_s = lock_timeout_s
        self.publish = publish_snapshot

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r}, snapshot={str(self.snapshot_path)!r})"

    def exists(self) -> bool:
        """Whether the warehouse has been created (its primary file exists)."""
        return self.path.exists()

    def retry_conflicts(self, body: Callable[[], T], what: str = "write") -> T:
        """Run ``body`` (one transaction or one DDL statement); the file warehouse has one writer at a time, so
        there is nothing to retry (the DuckLake backend retries commit conflicts)."""
        return body()

    @contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+") as fh:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            deadline = time.monotonic() + self.lock_timeout_s
            waited = False
            while True:
                try:
                    fcntl.flock(fh, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WarehouseLockTimeout(
                            f"waited {self.lock_timeout_s:.0f}s for the warehouse lock {lock_path}; "
                            "another pipeline process is writing"
                        ) from None
                    if not waited:
                        log.info("waiting for the warehouse lock %s (another step is writing)", lock_path)
                        waited = True
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write session on the primary file: exclusive lock, schema ensured, checkpointed on success.
        The snapshot is published later (:meth:`publish_if_written`), not after every session.

        Callers open their own transactions (``BEGIN``/``COMMIT``) for multi-statement writes.
        """
        with self._lock(exclusive=True):
            self._remove_dead_temps()
            self._unshare()
            con = connect_file(self.path)
            try:
                # commits go to the WAL; DuckDB checkpoints by itself past its WAL threshold, and the
                # snapshot publish checkpoints once (a checkpoint per session rewrote ~5x the data written)
                con.execute("PRAGMA disable_checkpoint_on_shutdown")
                con.execute(schema_sql())
                yield con
            finally:
                con.close()
            _UNPUBLISHED.add(self.path)

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only pipeline connection to the primary file (shared lock: waits for writers)."""
        if not self.path.exists():
            raise FileNotFoundError(f"warehouse {self.path} does not exist yet: materialize the ingestion assets first")
        with self._lock(exclusive=False):
            con = connect_file(self.path, read_only=True)
            try:
                yield con
            finally:
                con.close()

    def _shared_with_snapshot(self) -> bool:
        """Whether the primary file is (still) the published snapshot's inode."""
        try:
            return os.path.samefile(self.path, self.snapshot_path)
        except FileNotFoundError:
            return False

    def _remove_dead_temps(self) -> None:
        """Remove the temp files of a writer killed while copying the primary off the snapshot or publishing
        (``atomic_copy`` / ``atomic_link`` name them ``.<target>.<pid>.tmp`` / ``.link``): a half copy, or a
        hard link that keeps a whole previous warehouse file alive. Only the holder of the writers' lock makes
        them, so under the lock (the caller holds it) every one left is dead."""
        for target in (self.path, self.snapshot_path):
            prefix = f".{target.name}."
            try:
                names = os.listdir(target.parent)
            except FileNotFoundError:
                continue
            for name in names:
                pid, _, kind = name[len(prefix):].partition(".")
                if name.startswith(prefix) and pid.isdigit() and kind in ("tmp", "link"):
                    log.warning("removing %s, left by a pipeline process killed while copying or publishing", name)
                    (target.parent / name).unlink(missing_ok=True)

    def _unshare(self) -> None:
        """Copy-on-write: give the primary its own inode before anything opens it read-write (caller holds
        the writers' lock), so the published snapshot is never modified."""
        if self._shared_with_snapshot():
            log.info("copy-on-write: copying %s off the published snapshot before writing", self.path.name)
            atomic_copy(self.path, self.path)

    def _checkpoint(self) -> None:
        """Fold the WAL into the primary file (caller holds the writers' lock)."""
        if self._shared_with_snapshot():
            return  # published as is: nothing was written since, and the snapshot inode stays read-only
        con = connect_file(self.path)
        try:
            con.execute("CHECKPOINT")
        finally:
            con.close()

    def publish_snapshot(self) -> Path:
        """Checkpoint the primary file and publish it as the analyst snapshot (a hard link, or a copy where
        the filesystem has none), atomically, under the writers' lock: the last committed state."""
        with self._lock(exclusive=True):
            self._remove_dead_temps()
            self._checkpoint()
            if not self._shared_with_snapshot():
                try:
                    atomic_link(self.path, self.snapshot_path)
                except OSError:  # no hard links here (another filesystem, some network mounts)
                    atomic_copy(self.path, self.snapshot_path)
        _UNPUBLISHED.discard(self.path)
        return self.snapshot_path

    def publish_if_written(self) -> bool:
        """At the end of a run: when this process committed a write since the last publish, publish the
        snapshot - or, when publishing is off or deferred (``regimeflow run`` publishes once at its end),
        only checkpoint, so the WAL never spans more than one run. True when a snapshot was published."""
        if self.path not in _UNPUBLISHED or not self.path.exists():
            return False
        if _DEFERRED[0] or not self.publish:
            with self._lock(exclusive=True):
                self._checkpoint()
            return False
        self.publish_snapshot()
        return True

    def snapshot_reader(self) -> Warehouse:
        """The analyst snapshot as a read-only :class:`Warehouse` (for sensors: never waits for a running
        pipeline's write lock; sees the last published state). ``FileNotFoundError`` on read if absent."""
        return Warehouse(self.snapshot_path, lock_timeout_s=10.0, publish_snapshot=False)

    def connect_snapshot(self) -> duckdb.DuckDBPyConnection:
        """Analyst connection: read-only, on the latest published snapshot. Never blocks on a running pipeline."""
        if not self.snapshot_path.exists():
            raise FileNotFoundError(
                f"no analyst snapshot at {self.snapshot_path} yet: run the pipeline once (it publishes after every write)"
            )
        return connect_file(self.snapshot_path, read_only=True)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` … ``COMMIT``; on any error ``ROLLBACK`` (when a failed ``COMMIT`` has not ended it already)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if any: a commit that failed (a DuckLake conflict) has ended it."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException as exc:
        if "no transaction is active" not in str(exc):
            raise


def quote_ident(name: str) -> str:
    """A SQL identifier (column or table name) quoted for DuckDB: ``a"b`` -> ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def query_pl(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """Run ``sql`` and return a Polars frame (via Arrow, zero-copy where possible)."""
    import polars as pl

    rel = con.sql(sql, params=params) if params else con.sql(sql)
    return pl.from_arrow(rel.to_arrow_table())


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``schema.table`` exists in the connection's current database (e.g. in a warehouse created before
    the table was introduced)."""
    return bool(scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                       "AND schema_name || '.' || table_name = ?", [table]))


def is_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's current database is a DuckLake (no primary keys: :mod:`warehouse.lake`)."""
    return scalar(con, "SELECT type FROM duckdb_databases() WHERE database_name = current_database()") == "ducklake"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """First column of the first row. Fetches the whole result: DuckDB 2 refuses new work on a
    connection whose previous result was only partly fetched (e.g. by ``fetchone``)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None
