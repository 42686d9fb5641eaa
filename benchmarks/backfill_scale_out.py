"""The fold backfill in-process vs on Celery workers: wall time of every fold run of a prepared warehouse.

Usage: python benchmarks/backfill_scale_out.py --data-dir /path/to/market [--mode both|in_process|celery]
           [--workdir /tmp/backfill_bench] [--workers 2] [--concurrent-runs 4] [--folds 2012,2013]
           [--profile small.yaml] [--out results.md]   (``--data-dir synthetic``: the synthetic market, smoke run)

1. ``prepare`` once, in-process (not timed), into ``<workdir>/prepared``;
2. ``in_process``: a copy of it; every fold run one after another in this process, as ``regimeflow run`` does
   (torch's default threads: the learners use 2);
3. ``celery``: another copy; the localhost stack of the tests (PostgreSQL instance with
   ``deploy/cluster/dagster.yaml``, Redis, ``--workers`` Celery workers, each one process with 1 torch thread:
   ``policy.torch_threads`` / ``stock_book.rl_torch_threads`` = 1, OMP / MKL 1) and up to ``--concurrent-runs``
   fold runs at once, as the cluster's run queue launches a backfill (``max_concurrent_runs`` in that file);
   every step runs on a worker.

Prints and writes ``--out`` (default ``benchmarks/results/backfill_scale_out.md``): the machine's speed that day
(the stock env's env-steps/s on 1 thread, measured first), wall time per mode, the ratio, per-fold run times. A
batch of folds (``--folds``) measures both modes back to back, so batches from different days stay comparable.
Run it alone on the machine (it measures wall time). Needs ``postgresql`` and ``redis-server``
(``scripts/services.sh`` installs them).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

ONE_THREAD = {"resources": {"policy": {"config": {"torch_threads": 1}},
                            "stock_book": {"config": {"rl_torch_threads": 1}}}}


def _market(data_dir: str) -> dict[str, str]:
    return {"source": "synthetic"} if data_dir == "synthetic" else {"source": "csv", "data_dir": data_dir}


def _env(warehouse: Path, home: Path, data_dir: str, extra: dict | None = None) -> dict[str, str]:
    market = {f"REGIMEFLOW_{k.upper()}": v for k, v in _market(data_dir).items()}
    return {**os.environ, "REGIMEFLOW_WAREHOUSE": str(warehouse), "DAGSTER_HOME": str(home), **market,
            "PYTHONPATH": str(ROOT), **(extra or {})}


def _copy(prepared: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(prepared, dest, ignore=shutil.ignore_patterns("*.lock", "reports"))
    return dest / "regimeflow.duckdb"


def prepare(work: Path, data_dir: str, profile: list[str], prepared: str | None = None) -> tuple[Path, list[str]]:
    """``regimeflow run --folds none`` into ``<work>/prepared`` (or ``prepared``: the warehouse folder of an
    earlier run, used as it is: fold runs replace their partitions); the fold keys of its ``ref.folds``."""
    out, home = (Path(prepared).resolve() if prepared else work / "prepared"), work / "prepared_home"
    if not (out / "regimeflow.duckdb").exists():
        t0 = time.perf_counter()
        env = _env(out / "regimeflow.duckdb", home, data_dir)
        done = subprocess.run([sys.executable, "-m", "orchestration.cli", "run", "--folds", "none", *profile], cwd=work, env=env,
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"prepare failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        print(f"prepare: {time.perf_counter() - t0:.0f} s (not part of the comparison)", flush=True)
    from infra.resources import WarehouseResource
    from ml.folds import yearly_keys
    from warehouse.tables import read_table

    folds = read_table(WarehouseResource(path=str(out / "regimeflow.duckdb")).get(), "ref.folds")
    return out, yearly_keys(folds) + sorted(k for k in folds["key"] if not k.isdigit())


def machine_speed(work: Path) -> float:
    """The stock env's env-steps/s on 1 torch thread (``benchmarks/stock_env.py --trainer none``, random actions,
    E = 1,024): how fast this machine runs today, so batches measured on different days can be compared."""
    out = work / "machine_speed.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stock_env.py"), "--trainer", "none", "--json",
                    str(out)], check=True, capture_output=True, cwd=ROOT)
    rows = json.loads(out.read_text())["env"]
    return next(r["env_steps_per_s"] for r in rows if r["what"].startswith("env, random") and "1 thr" in r["where"])


def fold_runs(keys: list[str], executor: str, run_config: dict) -> dict[str, dict]:
    """Child process: execute the fold job for ``keys`` one after another; JSON {key: {seconds, success}}."""
    import dagster as dg

    from infra.partitions import FOLDS
    from orchestration.definitions import defs, reconstructable_job

    out = {}
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(FOLDS, keys)
        for key in keys:
            t0 = time.perf_counter()
            if executor == "celery":
                res = dg.execute_job(reconstructable_job("fold"), instance=instance, run_config=run_config,
                                     tags={"dagster/partition": key, "regimeflow/trigger": "benchmark"},
                                     raise_on_error=False)
            else:
                res = defs.resolve_job_def("fold").execute_in_process(
                    run_config=run_config, instance=instance, partition_key=key, raise_on_error=False)
            out[key] = {"seconds": time.perf_counter() - t0, "success": res.success}
            print(f"  fold {key} ({executor}): {out[key]['seconds']:.0f} s {'ok' if res.success else 'FAILED'}",
                  file=sys.stderr, flush=True)
    return out


def _child(keys: list[str], executor: str, env: dict[str, str], run_config: dict, log: Path) -> dict[str, dict]:
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); from backfill_scale_out import fold_runs; "
            f"print('RESULT ' + json.dumps(fold_runs({keys!r}, {executor!r}, json.loads(sys.argv[1]))))")
    with open(log, "a") as fh:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(run_config)], cwd=ROOT,
                              env={**env, "REGIMEFLOW_EXECUTOR": executor}, stdout=subprocess.PIPE, stderr=fh,
                              text=True)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"fold runs {keys} failed ({done.returncode}); see {log}\n{done.stdout[-2000:]}")
    result = json.loads(lines[0][len("RESULT "):])
    for key, r in result.items():
        print(f"  fold {key}: {r['seconds']:.0f} s {'ok' if r['success'] else 'FAILED'}", flush=True)
    return result


def run_in_process(work: Path, prepared: Path, keys: list[str], data_dir: str, base: dict) -> tuple[float, dict]:
    wh = _copy(prepared, work / "in_process")
    home = work / "in_process_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    t0 = time.perf_counter()
    per_fold = _child(keys, "in_process", _env(wh, home, data_dir), base, work / "in_process.log")
    return time.perf_counter() - t0, per_fold


def run_celery(work: Path, prepared: Path, keys: list[str], data_dir: str, base: dict, workers: int,
               concurrent: int) -> tuple[float, dict]:
    import local_stack

    lacking = local_stack.missing()
    if lacking:
        sys.exit(f"celery mode needs {', '.join(lacking)} (scripts/services.sh installs them)")
    wh = _copy(prepared, work / "celery")
    shutil.rmtree(work / "celery_home", ignore_errors=True)
    pg = local_stack.Postgres().start()
    redis = local_stack.Redis(work / "redis").start()
    stack = local_stack.cluster_env(pg, redis, work / "celery_home")
    env = _env(wh, work / "celery_home", data_dir, {**stack, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    from orchestration.profiles import merge_run_config

    pinned = {"resources": {"warehouse": {"config": {"path": str(wh)}}, "market": {"config": _market(data_dir)}}}
    run_config = merge_run_config(merge_run_config(base, ONE_THREAD), pinned)
    started = []
    try:
        started = [local_stack.CeleryWorker(f"bench{i}", work / "workers", stack).start()
                   for i in range(1, workers + 1)]
        queue = list(keys)
        per_fold: dict[str, dict] = {}
        t0 = time.perf_counter()
        # the run queue launches up to `concurrent` fold runs; each launcher process orchestrates one run at a time
        with ThreadPoolExecutor(concurrent) as pool:
            futures = [pool.submit(_child, [k], "celery", env, run_config, work / "celery.log") for k in queue]
            for f in futures:
                per_fold.update(f.result())
        return time.perf_counter() - t0, per_fold
    finally:
        for w in started:
            w.stop()
        redis.stop()
        pg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="CSV snapshot directory (e.g. ../shared/data/market)")
    ap.add_argument("--workdir", default="/tmp/backfill_bench")
    ap.add_argument("--mode", choices=["both", "in_process", "celery"], default="both")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrent-runs", type=int, default=4, help="as max_concurrent_runs in deploy/cluster")
    ap.add_argument("--folds", default=None, help="comma-separated fold keys (default: every fold)")
    ap.add_argument("--profile", default=None, help="a run-config YAML for every run (default: the default profile)")
    ap.add_argument("--prepared", default=None, help="warehouse folder of an earlier run of the same data to start "
                    "from instead of running prepare (e.g. <data>/warehouse; only read)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "backfill_scale_out.md"),
                    help="where the Markdown results go (one file per batch of folds)")
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    from orchestration.profiles import load_profile, merge_run_config

    data_dir = args.data_dir if args.data_dir == "synthetic" else str(Path(args.data_dir).resolve())
    base = merge_run_config(load_profile(args.profile or "default"),
                            {"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    prepared, keys = prepare(work, data_dir, ["--profile", args.profile] if args.profile else [], args.prepared)
    if args.folds:
        keys = [k for k in keys if k in set(args.folds.split(","))]
    print(f"{len(keys)} folds: {', '.join(keys)}", flush=True)
    speed = machine_speed(work)
    print(f"machine speed: stock env {speed:,.0f} env-steps/s (1 thread, E = 1,024)", flush=True)
    results: dict[str, tuple[float, dict]] = {}
    if args.mode in ("both", "in_process"):
        print("in-process:", flush=True)
        results["in-process (1 process, learners 2 threads)"] = run_in_process(work, prepared, keys, data_dir, base)
    if args.mode in ("both", "celery"):
        print(f"celery ({args.workers} workers, {args.concurrent_runs} concurrent runs):", flush=True)
        results[f"Celery, {args.workers} workers x 1 thread, {args.concurrent_runs} concurrent runs"] = run_celery(
            work, prepared, keys, data_dir, base, args.workers, args.concurrent_runs)
    lines = [f"# Fold backfill: {len(keys)} folds ({keys[0]} .. {keys[-1]}) on {os.cpu_count()} CPUs\n",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine speed before the runs: stock env "
             f"{speed:,.0f} env-steps/s (1 thread, E = 1,024; `benchmarks/stock_env.py`)\n",
             "| mode | wall | folds ok | sum of fold-run times |", "|---|---|---|---|"]
    for name, (wall, per_fold) in results.items():
        ok = sum(v["success"] for v in per_fold.values())
        lines.append(f"| {name} | {wall:.0f} s ({wall / 60:.1f} min) | {ok}/{len(per_fold)} | "
                     f"{sum(v['seconds'] for v in per_fold.values()):.0f} s |")
    if len(results) == 2:
        (a, _), (b, _) = results.values()
        lines.append(f"\nin-process / Celery wall-time ratio: {a / b:.2f}")
    lines.append("\nPer fold (seconds from launch to end of its run):\n")
    lines.append("| fold | " + " | ".join(results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{r[1][k]['seconds']:.0f}" for r in results.values()) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
