"""Benchmark: evaluation of every fold (excluding training) plus the walk-forward report, on an existing
warehouse whose folds are trained (e.g. after ``regimeflow run``).

Usage: REGIMEFLOW_WAREHOUSE=... DAGSTER_HOME=... python benchmarks/evaluation.py
Runs ``eval/fold`` for every fold partition and then ``eval/walk_forward`` in one process, in-process
executor, and reports the wall time of each and in total. Target (issue #6): <= 60 s for all default folds.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from assets.keys import EVAL_FOLD, EVAL_WALK_FORWARD  # noqa: E402
from orchestration.definitions import defs  # noqa: E402
from infra.partitions import FOLDS  # noqa: E402


def main() -> None:
    instance = dg.DagsterInstance.get()
    job = defs.resolve_implicit_global_asset_job_def()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    keys = instance.get_dynamic_partitions(FOLDS)
    t_all = time.perf_counter()
    for key in keys:
        t0 = time.perf_counter()
        ok = job.execute_in_process(instance=instance, partition_key=key, asset_selection=[EVAL_FOLD],
                                    run_config=quiet).success
        print(f"eval/fold {key:<16} {'ok' if ok else 'FAILED'} {time.perf_counter() - t0:6.1f} s", flush=True)
    t_folds = time.perf_counter() - t_all
    t0 = time.perf_counter()
    ok = job.execute_in_process(instance=instance, asset_selection=[EVAL_WALK_FORWARD], run_config=quiet).success
    t_wf = time.perf_counter() - t0
    print(f"eval/walk_forward {'ok' if ok else 'FAILED'} {t_wf:6.1f} s")
    print(f"total: {len(keys)} folds {t_folds:.1f} s + walk-forward {t_wf:.1f} s = {t_folds + t_wf:.1f} s")


if __name__ == "__main__":
    main()
