"""Benchmark: one nightly run when one new trading day arrives (target, issue #7: <= 60 s excluding retraining).

Setup (timed separately, not part of the measurement), into ``--work`` (default /tmp/regimeflow-nightly):
the real snapshot up to its second-to-last session D-1 → job ``prepare`` → job ``fold`` for the newest
yearly fold → job ``decide`` (the decision for D-1). A prepared setup is reused when ``--work`` holds one.

Measurement: ``regimeflow nightly`` as a fresh process (what the schedule's run worker does: imports,
incremental ingest of the CSV directory that now ends on D, checks, features, labels, regimes, the
decision for D), wall time and peak RSS; then the same command again with no new data (holiday no-op).

Usage: python benchmarks/nightly.py [--data-dir ../shared/data/market] [--work DIR] [--fresh]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _setup(data_dir: Path, base: Path) -> None:
    import dagster as dg

    from ml.data.csv_source import CsvMarketSource
    from ml.data.universe import Universe
    from orchestration.definitions import definitions_with
    from infra.partitions import FOLDS
    from infra.resources import MarketDataResource, WarehouseResource

    spy = CsvMarketSource(data_dir).load(Universe(allocation=["SPY"], sector_etfs=[], include_stocks=False,
                                                  history_start=None), on_progress=lambda _: None).bars
    days = spy.sort("date")["date"]
    last, before = days[-1], days[-2]
    print(f"setup: snapshot {data_dir} ends {last}; preparing the warehouse through {before}", flush=True)
    local = definitions_with(
        market=MarketDataResource(source="csv", data_dir=str(data_dir), history_end=str(before)),
        warehouse=WarehouseResource(path=str(base / "regimeflow.duckdb")))
    instance = dg.DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for job, key in (("prepare", None), ("fold", "newest"), ("decide", None)):
        if key == "newest":
            key = max(k for k in instance.get_dynamic_partitions(FOLDS) if k.isdigit())
        t0 = time.perf_counter()
        ok = local.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key, run_config=quiet,
                                                           raise_on_error=False).success
        print(f"setup: job {job}{' ' + key if key else ''}: {'ok' if ok else 'FAILED'} "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        if not ok:
            raise SystemExit(1)


def _nightly(env: dict, log_path: Path) -> tuple[float, float, str]:
    """``regimeflow nightly`` in a fresh process: (wall s, peak RSS MB of that process, its output)."""
    t0 = time.perf_counter()
    with open(log_path, "w") as fh:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("regimeflow")), "nightly", "--log-level", "DEBUG"], cwd=REPO, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    log = log_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        print(log[-5000:])
        raise SystemExit(1)
    return wall, usage.ru_maxrss / 1024, log


def _steps(log: str) -> list[str]:
    """'step: seconds' for every finished step, from the run's DEBUG log."""
    import re

    found = re.findall(r'Finished execution of step "([^"]+)" in ([0-9.]+)(ms|s)', log)
    return [f"{step:<42} {float(v) / (1000 if unit == 'ms' else 1):6.1f} s" for step, v, unit in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "market"))
    parser.add_argument("--work", default="/tmp/regimeflow-nightly")
    parser.add_argument("--fresh", action="store_true", help="rebuild the prepared setup")
    args = parser.parse_args()
    data_dir, work = Path(args.data_dir).absolute(), Path(args.work)
    base, run = work / "base", work / "run"
    if args.fresh or not (base / "regimeflow.duckdb").exists():
        shutil.rmtree(base, ignore_errors=True)
        _setup(data_dir, base)
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base, run)  # model artifacts stay referenced in base/ (read only)
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "REGIMEFLOW_WAREHOUSE": str(run / "regimeflow.duckdb"), "REGIMEFLOW_SOURCE": "csv",
           "REGIMEFLOW_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home)}
    wall, rss, log = _nightly(env, work / "nightly_1.log")
    print(f"nightly, one new day: {wall:.1f} s wall (fresh process), peak RSS {rss:.0f} MB")
    for step in _steps(log):
        print(f"  {step}")
    print("  " + next((line for line in log.splitlines() if line.startswith("daily decision:")), ""))
    wall, rss, log = _nightly(env, work / "nightly_2.log")
    print(f"nightly, no new data (holiday): {wall:.1f} s wall, peak RSS {rss:.0f} MB")
    print("  " + next((line.split(" - ")[-1] for line in log.splitlines() if "nothing to decide" in line), ""))


if __name__ == "__main__":
    main()
