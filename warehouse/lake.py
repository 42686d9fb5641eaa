"""The warehouse as a DuckLake: many processes write and read at once, without a file lock or snapshot copies.

A DuckLake keeps its catalog in a database - PostgreSQL for a cluster (``postgres:dbname=… host=…``), or a
local DuckDB file for one host (``/path/regimeflow.ducklake``) - and its rows as Parquet files under a data
path (default ``<warehouse dir>/lake``). Every commit is a catalog snapshot: readers only ever see whole
transactions, and writers in different processes commit concurrently (optimistic: a commit that conflicts with
one made meanwhile fails whole and is retried).

Extensions: DuckDB fetches extensions from the network by default. Here ``ducklake`` and ``postgres_scanner``
load from the files of the pip wheels ``duckdb-extension-ducklake`` / ``duckdb-extension-postgres-scanner``
(autoinstall and autoload off), which exist for DuckDB 1.5.x only: the project pins ``duckdb==1.5.5``.

What differs from the file warehouse (:class:`warehouse.db.Warehouse`):

* no primary keys (DuckLake has none): natural keys stay NOT NULL and the writers keep them unique (upserts
  UPDATE changed rows and INSERT new ones, partition writes replace a fold's rows);
* no analyst snapshot file: analysts attach the lake read-only (:meth:`connect_snapshot`) and see the last
  commit;
* with a PostgreSQL catalog, no writers' lock: writers commit optimistically, and a transaction that conflicts
  with one committed meanwhile (two fold runs replacing their rows of one table, two writers creating one view)
  is retried (:meth:`LakeWarehouse.retry_conflicts`). A catalog *file* is a DuckDB file, which one process opens
  at a time: sessions then take the file warehouse's lock (writers exclusive, readers shared);
* data inlining is off (``DATA_INLINING_ROW_LIMIT 0``): with it, DuckLake 1.5.5 returns inlined DOUBLEs rounded
  to 16 digits, which would break the pipeline's bit-for-bit reproducibility.
"""
from __future__ import annotations

import importlib.util
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import duckdb

from warehouse.db import T, Warehouse, schema_sql, transaction

log = logging.getLogger(__name__)

LAKE = "lake"  # the attached catalog's name in every connection (``USE lake``)
_WHEELS = {"duckdb_extension_postgres_scanner": "postgres_scanner", "duckdb_extension_ducklake": "ducklake"}
CONFLICT_RETRIES = 12  # attempts after the first; backoff 0.05 s doubling to 2 s, with jitter (~15 s in all)
_PRIMARY_KEY = re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)|\s+PRIMARY KEY", re.IGNORECASE)


def extension_files() -> list[Path]:
    """The extension files of the pip wheels, for this DuckDB version; ``RuntimeError`` naming what to install."""
    out = []
    for package, name in _WHEELS.items():
        spec = importlib.util.find_spec(package)
        path = (Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}"
                / f"{name}.duckdb_extension") if spec and spec.submodule_search_locations else None
        if path is None or not path.exists():
            raise RuntimeError(f"the DuckLake warehouse needs the pip wheel {package.replace('_', '-')}=="
                               f"{duckdb.__version__} (the wheels exist for DuckDB 1.5.x)")
        out.append(path)
    return out


def lake_schema_sql() -> str:
    """``warehouse/schema.sql`` without its primary keys (DuckLake has no constraints but NOT NULL)."""
    return _PRIMARY_KEY.sub("", schema_sql())


class LakeCatalogUnreachable(ConnectionError):
    """The lake's catalog database (PostgreSQL) does not answer: an outage, never an empty warehouse."""


class LakeWarehouse(Warehouse):
    """The warehouse in a DuckLake whose catalog is ``catalog`` (``postgres:<libpq string>`` or a file path)
    and whose Parquet files live under ``data_path``. ``path`` only places the artifact and report folders
    (``<path dir>/artifacts``, ``/reports``) as for the file warehouse."""

    backend = "ducklake"

    def __init__(self, catalog: str, path: str | Path, data_path: str | Path | None = None,
                 lock_timeout_s: float = 900.0):
        super().__init__(path, snapshot_path=Path(path), lock_timeout_s=lock_timeout_s, publish_snapshot=False)
        self.catalog = catalog
        self.data_path = Path(data_path) if data_path is not None else self.path.parent / "lake"
        self.shared_catalog = catalog.startswith("postgres:")  # else a DuckDB catalog file: one process at a time

    def __repr__(self) -> str:
        return f"LakeWarehouse({self.catalog!r}, data={str(self.data_path)!r})"

    def exists(self) -> bool:
        """Whether the lake holds the warehouse schema (``raw.bars`` exists). A catalog that does not exist yet
        reads as no warehouse; an unreachable one raises :class:`LakeCatalogUnreachable` (an outage must not
        read as an empty warehouse)."""
        with self._session_lock(exclusive=False):
            try:
                con = self._connect(read_only=True)
            except duckdb.Error:
                return False
            try:
                return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND "
                                        "schema_name = 'raw' AND table_name = 'bars'", [LAKE]).fetchall()[0][0])
            finally:
                con.close()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection with the lake attached; :class:`LakeCatalogUnreachable` when its catalog database does not
        answer (every session: exists, read, write, the analysts' connection)."""
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        try:
            for path in extension_files():
                con.execute(f"LOAD '{path}'")
            self.data_path.mkdir(parents=True, exist_ok=True)
            con.execute(attach_sql(self.catalog, self.data_path, read_only))
        except BaseException as e:
            con.close()
            if isinstance(e, duckdb.Error) and "Unable to connect" in str(e):
                raise LakeCatalogUnreachable(
                    f"the DuckLake catalog {self.catalog!r} cannot be reached (an outage, not an empty warehouse). "
                    f"Start its PostgreSQL (or fix REGIMEFLOW_LAKE_CATALOG) and run again.\n  {e}") from e
            raise
        return con

    def _session_lock(self, exclusive: bool):
        return nullcontext() if self.shared_catalog else self._lock(exclusive)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write session: the schema ensured, then the caller's transactions (:meth:`retry_conflicts`); with a
        PostgreSQL catalog other processes write at the same time (each transaction commits whole or not at all)."""
        with self._session_lock(exclusive=True):
            con = self._connect(read_only=False)
            try:
                self.retry_conflicts(lambda: self._ensure_schema(con), "schema")
                yield con
            finally:
                con.close()

    @staticmethod
    def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
        with transaction(con):
            con.execute(lake_schema_sql())

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only session on the last commit (with a PostgreSQL catalog, never waits for a writer)."""
        with self._session_lock(exclusive=False):
            con = self._connect(read_only=True)
            try:
                yield con
            finally:
                con.close()

    def retry_conflicts(self, body: Callable[[], T], what: str = "write") -> T:
        """Run ``body`` (one transaction, or one DDL statement) and run it again when its commit conflicts with a
        transaction another writer committed meanwhile (DuckLake's optimistic concurrency: e.g. two fold runs
        replacing their own rows of one table). A conflicting commit changed nothing, so a retry is safe; after
        :data:`CONFLICT_RETRIES` retries the error is raised."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return body()
            except duckdb.TransactionException as exc:
                if "Transaction conflict" not in str(exc) or attempt == CONFLICT_RETRIES:
                    raise
                wait = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                log.warning("DuckLake commit conflict (%s), retrying in %.2f s (%d/%d): %s", what, wait,
                            attempt + 1, CONFLICT_RETRIES, str(exc).splitlines()[-1])
                time.sleep(wait)
        raise AssertionError("unreachable")

    def publish_snapshot(self) -> Path:
        """Nothing to publish: every commit is visible to readers at once."""
        return self.path

    def publish_if_written(self) -> bool:
        return False

    def snapshot_reader(self) -> LakeWarehouse:
        return self

    def connect_snapshot(self) -> duckdb.DuckDBPyConnection:
        """Analyst connection: the lake attached read-only (``USE lake``), at its last commit."""
        return self._connect(read_only=True)


def attach_sql(catalog: str, data_path: str | Path, read_only: bool) -> str:
    """``ATTACH`` the lake as :data:`LAKE` and ``USE`` it (the extensions loaded). No data inlining: DuckLake 1.5.5
    stores small inserts inline in the catalog and returns their DOUBLEs rounded (0.13178317248821259 comes back
    as 0.1317831724882126); every row goes to Parquet instead."""
    options = f"DATA_PATH '{Path(data_path)}/', DATA_INLINING_ROW_LIMIT 0" + (", READ_ONLY" if read_only else "")
    return f"ATTACH 'ducklake:{catalog}' AS {LAKE} ({options}); USE {LAKE};"


def analyst_sql(catalog: str, data_path: str | Path) -> str:
    """The statements that open the lake read-only in a ``duckdb`` 1.5.5 CLI, offline: LOAD the wheels' extension
    files, ATTACH the catalog, USE it."""
    return "\n".join([*(f"LOAD '{path}';" for path in extension_files()), attach_sql(catalog, data_path, True)])


if __name__ == "__main__":  # python -m warehouse.lake: the SQL for the configured lake ($REGIMEFLOW_LAKE_CATALOG)
    import os
    import sys

    from warehouse.db import default_warehouse_path

    catalog = os.environ.get("REGIMEFLOW_LAKE_CATALOG")
    if not catalog:
        sys.exit("REGIMEFLOW_LAKE_CATALOG is not set: this warehouse is the DuckDB file (no lake)")
    print(analyst_sql(catalog, LakeWarehouse(catalog, default_warehouse_path()).data_path))
