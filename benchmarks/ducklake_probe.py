"""Two writer processes and a reader on one DuckLake (catalog in PostgreSQL, Parquet data files under
``--data-path``) through :class:`warehouse.lake.LakeWarehouse`: how often commits conflict, whether the retries
get every write through, and whether a reader ever sees half a transaction. A script, not a test.

    python benchmarks/ducklake_probe.py --postgres "dbname=dagster host=127.0.0.1 port=5432 user=me"

Each writer commits ``--commits`` transactions, each replacing its own fold's 1,000 rows in one shared table
(delete + insert, as a fold run's per-fold write does) and one of its own tables, through
``LakeWarehouse.retry_conflicts``; the reader checks every 50 ms that every fold holds exactly 1,000 rows of a
single commit. Prints commits, conflicts retried, failures, reader queries and errors.
Measured 2026-12-01 on this 2-core machine (DuckDB 1.5.5): 2 x 30 commits, 9 conflicts retried (1 + 8), 0
failures; the reader 35 queries, 0 errors, never a partial transaction; 24 s.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse.db import transaction  # noqa: E402
from warehouse.lake import LakeWarehouse, extension_files  # noqa: E402


def _lake(args) -> LakeWarehouse:
    return LakeWarehouse(f"postgres:{args.postgres}", Path(args.data_path) / "wh.duckdb", args.data_path)


def writer(args, i: int, out) -> None:
    lake, attempts, failures = _lake(args), [0], 0

    def replace(con, k: int) -> None:
        attempts[0] += 1
        with transaction(con):
            con.execute("DELETE FROM main.t_shared WHERE fold = ?", [str(i)])
            con.execute(f"INSERT INTO main.t_shared SELECT '{i}', {k}, range FROM range(1000)")
            con.execute(f"CREATE OR REPLACE TABLE main.t_{i}_{k % 3} AS SELECT range AS x FROM range(5000)")

    with lake.write() as con:
        for k in range(args.commits):
            try:
                lake.retry_conflicts(lambda: replace(con, k), f"writer {i}")
            except Exception as exc:  # noqa: BLE001 - counted and printed
                failures += 1
                print(f"writer {i} gave up on commit {k}: {exc}", flush=True)
    out.put((i, args.commits, attempts[0] - args.commits, failures))


def reader(args, stop, out) -> None:
    lake, queries, errors = _lake(args), 0, []
    while not stop.is_set():
        try:
            con = lake.connect_snapshot()
            try:
                bad = con.execute("SELECT fold, count(*), count(DISTINCT k) FROM main.t_shared GROUP BY fold "
                                  "HAVING count(*) <> 1000 OR count(DISTINCT k) <> 1").fetchall()
            finally:
                con.close()
            assert not bad, f"partial transaction visible: {bad}"
            queries += 1
        except Exception as exc:  # noqa: BLE001 - counted and printed
            errors.append(str(exc)[:200])
        time.sleep(0.05)
    out.put(("reader", queries, errors[:3], len(errors)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", required=True, help="libpq connection string of the catalog database")
    ap.add_argument("--data-path", default="/tmp/ducklake_probe")
    ap.add_argument("--commits", type=int, default=30)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    shutil.rmtree(args.data_path, ignore_errors=True)
    print(f"extensions {[p.name for p in extension_files()]}")
    with _lake(args).write() as con:
        con.execute("DROP TABLE IF EXISTS main.t_shared")
        con.execute("CREATE TABLE main.t_shared (fold VARCHAR, k INTEGER, v BIGINT)")
        con.execute("INSERT INTO main.t_shared SELECT f, -1, range FROM range(1000), (VALUES ('1'), ('2')) v(f)")
    out, stop = mp.Queue(), mp.Event()
    read = mp.Process(target=reader, args=(args, stop, out))
    read.start()
    t0 = time.perf_counter()
    writers = [mp.Process(target=writer, args=(args, i, out)) for i in (1, 2)]
    for w in writers:
        w.start()
    results = [out.get() for _ in writers]
    stop.set()
    results.append(out.get())
    for p in (*writers, read):
        p.join()
    for r in results:
        if r[0] == "reader":
            print(f"reader: {r[1]} queries, {r[3]} errors {r[2]}")
        else:
            print(f"writer {r[0]}: {r[1]} commits, {r[2]} conflicts retried, {r[3]} failures")
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
