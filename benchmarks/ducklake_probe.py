"""Does DuckLake work here, offline? Two writer processes and a reader on one DuckLake (catalog in PostgreSQL,
Parquet data files under ``--data-path``); a script for the multi-writer warehouse decision, not a test.

Needs a Python with DuckDB 1.5.x and the pip wheels ``duckdb-extension-ducklake`` and
``duckdb-extension-postgres-scanner`` (no wheels exist for DuckDB 2.0, the project's version today), e.g.::

    python -m venv /tmp/lake && /tmp/lake/bin/pip install duckdb==1.5.5 duckdb-extension-ducklake==1.5.5 \\
        duckdb-extension-postgres-scanner==1.5.5
    /tmp/lake/bin/python benchmarks/ducklake_probe.py --postgres "dbname=dagster host=127.0.0.1 port=5432 user=me"

The extensions load from the wheels' files (``LOAD '<path>'``; autoinstall off: no network). Each writer commits
``--commits`` transactions (delete + insert 1,000 rows of its own key range in one shared table, and replace one
of its own tables); the reader checks every 50 ms that the shared table only ever holds whole transactions.
Measured 2026-12-01 on this 2-core machine (while a benchmark ran): 2 x 30 commits, 0 conflicts, 0 failures,
125 reader queries without an error or a partial transaction, 53 s.
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import shutil
import time
from pathlib import Path

import duckdb

WHEELS = {"duckdb_extension_postgres_scanner": "postgres_scanner", "duckdb_extension_ducklake": "ducklake"}


def extension_files() -> list[str]:
    """The extension files the pip wheels install (``<package>/extensions/v<duckdb>/<name>.duckdb_extension``)."""
    out = []
    for package, name in WHEELS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"pip install {package.replace('_', '-')}=={duckdb.__version__}")
        root = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}"
        out.append(str(root / f"{name}.duckdb_extension"))
    return out


def connect(args) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"autoload_known_extensions": False, "autoinstall_known_extensions": False})
    for path in extension_files():
        con.execute(f"LOAD '{path}'")
    con.execute(f"ATTACH 'ducklake:postgres:{args.postgres}' AS lake (DATA_PATH '{args.data_path}/')")
    con.execute("USE lake")
    return con


def writer(args, i: int) -> None:
    con, retries, failures = connect(args), 0, 0
    for k in range(args.commits):
        for attempt in range(20):
            try:
                con.execute("BEGIN")
                con.execute(f"DELETE FROM t_shared WHERE fold = '{i}' AND k = {k}")
                con.execute(f"INSERT INTO t_shared SELECT '{i}', {k}, range FROM range(1000)")
                con.execute(f"CREATE OR REPLACE TABLE t_{i}_{k % 3} AS SELECT range AS x FROM range(5000)")
                con.execute("COMMIT")
                break
            except duckdb.Error as exc:
                retries += 1
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:  # the failed COMMIT already ended the transaction
                    pass
                if attempt == 19:
                    failures += 1
                    print(f"writer {i} gave up on commit {k}: {exc}")
                time.sleep(0.05 * (attempt + 1))
    print(f"writer {i}: {args.commits} commits, {retries} retries after a conflict, {failures} failures", flush=True)


def reader(args, stop) -> None:
    con, queries, errors = connect(args), 0, []
    while not stop.is_set():
        try:
            rows, transactions = con.execute("SELECT count(*), count(DISTINCT fold || k) FROM t_shared").fetchall()[0]
            assert rows == transactions * 1000, f"partial transaction visible: {rows} rows, {transactions} keys"
            queries += 1
        except (duckdb.Error, AssertionError) as exc:
            errors.append(str(exc)[:200])
        time.sleep(0.05)
    print(f"reader: {queries} queries, {len(errors)} errors {errors[:2]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", required=True, help="libpq connection string of the catalog database")
    ap.add_argument("--data-path", default="/tmp/ducklake_probe")
    ap.add_argument("--commits", type=int, default=30)
    args = ap.parse_args()
    shutil.rmtree(args.data_path, ignore_errors=True)
    print(f"duckdb {duckdb.__version__}; extensions {extension_files()}")
    con = connect(args)
    con.execute("DROP TABLE IF EXISTS t_shared")
    con.execute("CREATE TABLE t_shared (fold VARCHAR, k INTEGER, v BIGINT)")
    con.close()
    stop = mp.Event()
    read = mp.Process(target=reader, args=(args, stop))
    read.start()
    t0 = time.perf_counter()
    writers = [mp.Process(target=writer, args=(args, i)) for i in (1, 2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    read.join()
    con = connect(args)
    counts = con.execute("SELECT fold, count(*) FROM t_shared GROUP BY ALL ORDER BY 1").fetchall()
    print(f"rows per writer {counts}; {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
