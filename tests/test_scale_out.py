"""The production stack on localhost: a Postgres-backed Dagster instance, Redis, and two Celery workers that
execute the fold runs' steps (``regimeflow run --executor celery``), compared with the in-process run."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import torch

import local_stack

pytestmark = pytest.mark.slow

FOLDS = "2013,2014"
PROFILE = """
resources:
  market: {config: {include_stocks: false, sector_etfs: [XLB, XLE, XLF, XLK, XLV], history_start: "2008-01-01",
                    history_end: "2014-12-31"}}
  features: {config: {lookahead_cutoffs: 2}}
  regimes: {config: {hmm_restarts: 1}}
  prescreen: {config: {cv_splits: 2, n_jobs: 1, generations: 1}}
  policy: {config: {total_steps: 4096, num_envs: 16, episode_length: 128, offpolicy_total_steps: 2048,
                    offpolicy_num_envs: 16, qlearning_epochs_scale: 0.02}}
"""
def _volatile(name: object) -> bool:
    """Columns / entries that record when or how fast something ran, or a file's identity (artifact files
    record their training's wall time, so their hashes differ between two runs)."""
    n = str(name)
    return (n in ("path", "sha256") or n.endswith(("_s", "seconds", "_at"))
            or any(t in n for t in ("wall", "per_s", "elapsed", "run_id")))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    lacking = local_stack.missing()
    if lacking:
        pytest.skip(f"needs {', '.join(lacking)} (scripts/setup.sh installs the Debian packages when it can)")
    root = tmp_path_factory.mktemp("stack")
    pg = local_stack.Postgres().start()
    redis = local_stack.Redis(root / "redis").start()
    home = root / "dagster_home"
    env = local_stack.cluster_env(pg, redis, home)
    workers = []
    try:
        workers = [local_stack.CeleryWorker(f"w{i}", root / "workers", env).start() for i in (1, 2)]
        yield {"pg": pg, "redis": redis, "home": home, "env": env, "workers": workers, "root": root}
    finally:
        for w in workers:
            w.stop()
        redis.stop()
        pg.stop()


def _cli(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(local_stack.ROOT), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as fh:
        return subprocess.run([sys.executable, "-m", "orchestration.cli", *args], cwd=cwd, env=full, stdout=fh,
                              stderr=subprocess.STDOUT, timeout=1800)


def _tables(path: Path) -> dict[str, pl.DataFrame]:
    """Every table of the fold outputs (schemas eval, models, regimes) without run-time columns, sorted."""
    out = {}
    with duckdb.connect(str(path), read_only=True) as con:
        names = con.sql("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                        "WHERE table_schema IN ('eval', 'models', 'regimes') AND table_type = 'BASE TABLE'").fetchall()
        for (name,) in names:
            frame = con.sql(f"SELECT * FROM {name}").pl()
            keep = [c for c in frame.columns if not _volatile(c)]
            out[name] = frame.select(keep).sort(keep, nulls_last=True) if keep else frame
    return out


def _differences(a: object, b: object, where: str = "", depth: int = 0) -> list[str]:
    """Where two loaded artifacts differ in what they computed (tensors, arrays, estimators' state, metadata),
    ignoring run-time entries (:func:`_volatile`); JSON strings are compared parsed."""
    if depth > 60:
        return [f"{where}: too deep"]
    if isinstance(a, str) and isinstance(b, str) and a.startswith("{") and b.startswith("{"):
        a, b = json.loads(a), json.loads(b)
    if isinstance(a, dict) and isinstance(b, dict):
        keys_a, keys_b = {k for k in a if not _volatile(k)}, {k for k in b if not _volatile(k)}
        if keys_a != keys_b:
            return [f"{where}: keys {sorted(map(str, keys_a ^ keys_b))}"]
        return [d for k in sorted(keys_a, key=str) for d in _differences(a[k], b[k], f"{where}.{k}", depth + 1)]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]", depth + 1)]
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b) else [f"{where}: tensor"]
    if isinstance(a, np.ndarray):
        same = (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        return [] if same else [f"{where}: array"]
    if isinstance(a, float) and isinstance(b, float):
        return [] if a == b or (math.isnan(a) and math.isnan(b)) else [f"{where}: {a!r} != {b!r}"]
    if isinstance(a, str | bytes | int | bool | type(None)):
        return [] if a == b else [f"{where}: {a!r} != {b!r}"[:300]]
    if type(a) is not type(b):
        return [f"{where}: {type(a).__name__} != {type(b).__name__}"]
    state = getattr(a, "__getstate__", None)
    if state is not None and not isinstance(a, type):  # estimators and sklearn's Tree
        return _differences(a.__getstate__(), b.__getstate__(), f"{where}.{type(a).__name__}", depth + 1)
    return [] if a == b else [f"{where}: {type(a).__name__}"]


def _artifacts(warehouse: Path) -> dict[tuple[str, str], object]:
    """Every fold artifact recorded in ``models.artifacts``, loaded (hash-verified)."""
    from ml.artifacts import load_joblib, load_json, load_torch

    loaders = {".pt": load_torch, ".joblib": load_joblib, ".json": load_json}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql("SELECT fold, kind, path, sha256 FROM models.artifacts").fetchall()
    out = {}
    for fold, kind, rel, sha in rows:
        path = warehouse.parent / "artifacts" / rel
        out[(fold, kind)] = b"" if path.stat().st_size == 0 else loaders[path.suffix](path, sha)
    return out


def _assert_same_tables(ours: dict[str, pl.DataFrame], theirs: dict[str, pl.DataFrame]) -> None:
    """Two :func:`_tables` results hold the same tables with equal contents (``models.artifacts``' ``meta``, JSON
    with each training's wall time and file hash, left out: the artifacts are compared loaded)."""
    assert ours.keys() == theirs.keys() and len(ours) > 30
    for name in ours:
        frame_ours, frame_theirs = ours[name], theirs[name]
        if name == "models.artifacts":
            frame_ours, frame_theirs = (f.drop("meta") for f in (frame_ours, frame_theirs))
        assert frame_ours.equals(frame_theirs), name


def _assert_same_outputs(wh: Path, ref_wh: Path) -> None:
    """Bit for bit: every fold output table (analyst snapshots) and every model's content equal the reference's
    (the artifact files themselves differ: they record their training's wall time)."""
    _assert_same_tables(_tables(wh.with_name("wh_read.duckdb")), _tables(ref_wh.with_name("wh_read.duckdb")))
    models_ours, models_theirs = _artifacts(wh), _artifacts(ref_wh)
    assert models_ours.keys() == models_theirs.keys() and len(models_ours) == 18
    for key in models_ours:
        assert _differences(models_ours[key], models_theirs[key]) == [], key


class _Reader(threading.Thread):
    """An analyst querying the warehouse's snapshot every 0.2 s while the backfill runs."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.stop, self.queries, self.errors = path, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with duckdb.connect(str(self.path), read_only=True) as con:
                    con.sql("SELECT count(*) FROM raw.bars").fetchall()
                    con.sql("SELECT count(*) FROM information_schema.tables").fetchall()
                self.queries += 1
            except Exception as exc:  # noqa: BLE001 - every failure is what the test reports
                self.errors.append(repr(exc))
            time.sleep(0.2)


def _fold_runs(env: dict[str, str], monkeypatch) -> list:
    """The fold runs recorded in the stack's instance (Postgres), oldest first."""
    import dagster as dg

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.get() as instance:
        return [(r, instance.all_logs(r.run_id)) for r in reversed(instance.get_runs()) if r.job_name == "fold"]


def _of_type(logs: list, event_type) -> list:
    return [e for e in logs if e.dagster_event is not None and e.dagster_event.event_type == event_type]


def _celery_hosts(logs: list) -> dict[str, str]:
    """Step key -> the Celery worker that executed it (the workers' engine events)."""
    import dagster as dg

    out = {}
    for e in _of_type(logs, dg.DagsterEventType.ENGINE_EVENT):
        meta = e.dagster_event.engine_event_data.metadata
        if "Celery worker" in meta and e.step_key:
            out[e.step_key] = str(meta["Celery worker"].value)
    return out


@pytest.fixture(scope="module")
def runs(stack, small_fold_reference, tmp_path_factory):
    """The same backfill as the in-process reference (conftest's ``small_fold_reference``: own warehouse,
    SQLite instance) on the stack: prepare in-process (it publishes the analyst snapshot), then the two fold
    partitions on the workers while an analyst queries the snapshot every 0.2 s."""
    tmp = tmp_path_factory.mktemp("runs")
    profile = tmp / "small.yaml"
    profile.write_text(PROFILE)
    common = ["run", "--source", "synthetic", "--profile", str(profile)]
    wh = tmp / "stack" / "wh.duckdb"
    env = {**stack["env"], "REGIMEFLOW_WAREHOUSE": str(wh)}
    prep = _cli([*common, "--folds", "none"], env, tmp, tmp / "prep.log")
    assert prep.returncode == 0, (tmp / "prep.log").read_text()[-3000:]
    reader = _Reader(wh.with_name("wh_read.duckdb"))
    reader.start()
    t0 = time.perf_counter()
    run = _cli([*common, "--folds", FOLDS, "--executor", "celery"], env, tmp, tmp / "celery.log")
    wall = time.perf_counter() - t0
    reader.stop.set()
    reader.join(10)
    assert run.returncode == 0, (tmp / "celery.log").read_text()[-5000:]
    return {"tmp": tmp, "common": common, "env": env, "wh": wh, "ref_wh": small_fold_reference["wh"],
            "reader": reader, "wall_s": wall}


def test_fold_backfill_runs_on_celery_workers_and_equals_in_process(stack, runs, monkeypatch):
    import dagster as dg

    reader = runs["reader"]
    assert reader.queries > 10 and not reader.errors, reader.errors[:3]  # the analyst never saw an error
    # the runs are in the Postgres instance, and their steps ran in the workers' processes
    fold_runs = _fold_runs(stack["env"], monkeypatch)  # prepare ran before, in-process
    assert sorted(r.tags["dagster/partition"] for r, _ in fold_runs) == FOLDS.split(",")
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r, _ in fold_runs)
    worker_pids = {p for w in stack["workers"] for p in w.pool_pids()}
    hosts = set()
    for _, logs in fold_runs:
        starts = _of_type(logs, dg.DagsterEventType.STEP_START)
        assert len(starts) >= 14 and {e.dagster_event.pid for e in starts} <= worker_pids  # not the launcher's
        hosts |= set(_celery_hosts(logs).values())
    assert hosts == {w.hostname for w in stack["workers"]}  # both workers took steps

    _assert_same_outputs(runs["wh"], runs["ref_wh"])


PPO_STEP = "models__policy_ppo"


def _await_ppo_start(proc: subprocess.Popen, before: set[str], env: dict[str, str], monkeypatch, timeout_s: float,
                     on_worker: bool = False) -> list | None:
    """Poll the instance until a fold run not in ``before`` has started PPO's step (and, ``on_worker``, a Celery
    worker reported taking it): that run's logs; None when ``proc`` ended or ``timeout_s`` passed first."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        for run, logs in _fold_runs(env, monkeypatch):
            started = {e.step_key for e in _of_type(logs, dg.DagsterEventType.STEP_START)}
            if run.run_id not in before and PPO_STEP in started and (not on_worker or PPO_STEP in _celery_hosts(logs)):
                return logs
    return None


def test_a_worker_killed_mid_step_requeues_the_step_and_leaves_nothing_half_written(stack, runs, monkeypatch):
    """SIGKILL the worker process executing fold 2014's PPO training: Celery re-queues the task (late ack,
    reject on worker loss), a worker runs the step again, the run succeeds and the fold's outputs equal the
    in-process reference bit for bit."""
    import dagster as dg

    before = {r.run_id for r, _ in _fold_runs(stack["env"], monkeypatch)}
    full = {**os.environ, **runs["env"], "PYTHONPATH": str(local_stack.ROOT), "OMP_NUM_THREADS": "1"}
    log = runs["tmp"] / "kill.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "orchestration.cli", *runs["common"], "--folds", "2014",
                                 "--executor", "celery"], cwd=runs["tmp"], env=full, stdout=fh,
                                stderr=subprocess.STDOUT)
    logs = _await_ppo_start(proc, before, stack["env"], monkeypatch, 900, on_worker=True)
    assert logs is not None, log.read_text()[-3000:]
    worker = next(w for w in stack["workers"] if w.hostname == _celery_hosts(logs)[PPO_STEP])
    time.sleep(1.0)  # mid-training
    killed = worker.pool_pids()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    assert killed, log.read_text()[-3000:]
    assert proc.wait(900) == 0, log.read_text()[-5000:]
    (run, logs), = [(r, lg) for r, lg in _fold_runs(stack["env"], monkeypatch) if r.run_id not in before]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    ppo_starts = [e for e in _of_type(logs, dg.DagsterEventType.STEP_START) if e.step_key == PPO_STEP]
    assert len(ppo_starts) == 2 and ppo_starts[0].dagster_event.pid in killed  # the killed try and the re-run
    assert all(w.proc.poll() is None for w in stack["workers"])  # the worker replaced its pool process

    _assert_same_outputs(runs["wh"], runs["ref_wh"])


def test_postgres_stopped_mid_run_fails_clearly_and_loses_nothing(stack, runs, monkeypatch):
    """Stop the instance's PostgreSQL while fold 2013's PPO trains (an in-process fold run on the stack's
    instance, over the backfilled warehouse): the CLI exits with code 3 and says what went away and what to do;
    every warehouse table is whole (equal to before the run: the steps that finished rewrote identical rows, the
    interrupted one wrote nothing); with Postgres back the same command succeeds, outputs still bit-identical."""
    import dagster as dg

    from orchestration.cli import INSTANCE_LOST

    wh, pg = runs["wh"], stack["pg"]
    tables_before = _tables(wh)
    before = {r.run_id for r, _ in _fold_runs(stack["env"], monkeypatch)}
    full = {**os.environ, **runs["env"], "PYTHONPATH": str(local_stack.ROOT), "OMP_NUM_THREADS": "1",
            "REGIMEFLOW_EXECUTOR": "in_process"}
    log = runs["tmp"] / "pg_stop.log"
    halted = False
    try:
        with open(log, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "orchestration.cli", *runs["common"], "--folds", "2013"],
                                    cwd=runs["tmp"], env=full, stdout=fh, stderr=subprocess.STDOUT)
        assert _await_ppo_start(proc, before, stack["env"], monkeypatch, 600) is not None, log.read_text()[-3000:]
        time.sleep(1.0)  # mid-training
        pg.halt()
        halted = True
        assert proc.wait(600) == INSTANCE_LOST, log.read_text()[-5000:]
        said = log.read_text()
        assert f"lost PostgreSQL at 127.0.0.1:{pg.port}" in said and "run the same command again" in said
        assert "Traceback" not in said  # a plain statement, not a stack trace
    finally:
        if halted:
            pg.start_again()

    _assert_same_tables(_tables(wh), tables_before)

    rerun = _cli([*runs["common"], "--folds", "2013"], {**runs["env"], "REGIMEFLOW_EXECUTOR": "in_process"},
                 runs["tmp"], runs["tmp"] / "pg_rerun.log")
    assert rerun.returncode == 0, (runs["tmp"] / "pg_rerun.log").read_text()[-5000:]
    newest, _ = _fold_runs(stack["env"], monkeypatch)[-1]
    assert newest.status == dg.DagsterRunStatus.SUCCESS and newest.run_id not in before
    _assert_same_outputs(wh, runs["ref_wh"])
