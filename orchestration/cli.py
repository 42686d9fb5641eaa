"""``regimeflow`` command line: ``regimeflow run`` executes the main pipeline and prints what was loaded.

The main pipeline = job ``prepare`` (ingestion, features, VIX regimes, folds), job ``fold`` for every
fold partition (sector HMMs, prescreen, policies, evaluation), job ``report`` (walk-forward track,
HTML report, analyst views), then job ``decide`` (the newest fold's decision for the next session).
``regimeflow nightly`` runs the nightly job once; ``regimeflow audit`` replays the decision log.

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (default ``./.dagster_home``), the
same one ``dagster dev`` uses when started with that DAGSTER_HOME, so CLI runs show up in the UI.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.profiles import PROFILE_NAMES


def _instance():
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").absolute())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # offline-friendly default; edit freely afterwards
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


INSTANCE_LOST = 3  # exit code: the Dagster instance's database went away (e.g. Postgres stopped) during the run


def _instance_storage_error(exc: BaseException) -> BaseException | None:
    """The database error behind ``exc`` when the Dagster instance's storage (Postgres, or SQLite) failed,
    else None: dagster-postgres gives up after its connection retries, SQLAlchemy raises OperationalError."""
    seen, depth = exc, 0
    while seen is not None and depth < 50:
        kind = type(seen)
        if kind.__name__ in ("DagsterPostgresException", "OperationalError") and "duckdb" not in kind.__module__:
            return seen  # DuckDB's own OperationalError (module _duckdb) is a warehouse error, not the instance's
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return None


def _report_instance_lost(exc: BaseException, what: str) -> int:
    """Say clearly that the instance's database went away, what that means for the warehouse, and what to do."""
    where = (f"PostgreSQL at {os.environ['REGIMEFLOW_PG_HOST']}:{os.environ.get('REGIMEFLOW_PG_PORT', '5432')}"
             if os.environ.get("REGIMEFLOW_PG_HOST") else "its database")
    print(f"\nregimeflow: the Dagster instance ($DAGSTER_HOME={os.environ.get('DAGSTER_HOME')}) lost {where} during "
          f"{what}: {str(exc).strip().splitlines()[0]}\n"
          "  The warehouse is consistent: every step writes its tables in one DuckDB transaction, so the steps that "
          "finished are stored whole and the interrupted one wrote nothing.\n"
          "  The interrupted run's record in the instance is incomplete (it may show as STARTED).\n"
          "  Bring the database back (e.g. `systemctl start postgresql`) and run the same command again.",
          file=sys.stderr, flush=True)
    return INSTANCE_LOST


def _print_summary(wh, result, profile: str) -> None:
    from warehouse import ingest as wi

    print("\n" + "=" * 72)
    print(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILED'} (profile {profile})")
    if getattr(wh, "backend", "duckdb") == "ducklake":
        print(f"warehouse (DuckLake): catalog {wh.catalog}, data files {wh.data_path}")
        print(f"analysts:             ATTACH 'ducklake:{wh.catalog}' AS lake (READ_ONLY)   (warehouse/lake.py)")
    else:
        print(f"warehouse (pipeline): {wh.path}")
        print(f"analyst snapshot:     {wh.snapshot_path}   (duckdb -readonly {wh.snapshot_path})")
    if not wh.exists():
        return
    tickers = wi.ticker_summary(wh)
    if tickers.height:
        sources = ", ".join(sorted(set(tickers["source"])))
        banner = "  <-- SYNTHETIC DATA, not real prices" if "synthetic" in sources else ""
        print(f"source: {sources}{banner}")
        print(f"bars: {tickers['rows'].sum():,} rows, {tickers.height} tickers, "
              f"{tickers['first_date'].min()} .. {tickers['last_date'].max()}")
        for row in wi.index_summary(wh).iter_rows(named=True):
            print(f"index {row['symbol']}: {row['rows']:,} rows {row['first_date']} .. {row['last_date']}")
    print("tables:")
    for table, n in wi.table_counts(wh).items():
        print(f"  {table:<28} {n:>12,}")
    checks = [e for e in result.get_asset_check_evaluations()]
    failed = [e for e in checks if not e.passed]
    print(f"asset checks: {len(checks) - len(failed)}/{len(checks)} passed")
    for e in failed:
        print(f"  FAILED {e.asset_key.to_user_string()}:{e.check_name} ({e.severity.value})")
    print("=" * 72)


def _print_folds(results: list) -> None:
    if not results:
        return
    print("folds:")
    for key, res, secs in results:
        print(f"  {key:<16} {'ok' if res.success else 'FAILED':<7} {secs:7.1f} s")


@dataclass
class _MainRuns:
    """The runs of one ``regimeflow run``: the first job, its failed blocking checks, every fold run
    ``(key, result, seconds)``, the walk-forward report and the decision (None when not reached)."""

    first: Any
    blocked: list = field(default_factory=list)
    folds: list = field(default_factory=list)
    report: Any = None
    decide: Any = None

    @property
    def ok(self) -> bool:
        return (self.first.success and not self.blocked and all(r.success for _, r, _ in self.folds)
                and all(r is None or r.success for r in (self.report, self.decide)))


def _run_main_job(args: argparse.Namespace, run_config: dict, instance) -> _MainRuns | int:
    """``args.job`` (default ``prepare``), then - after prepare, unless a blocking check failed - the fold
    job for every wanted fold partition, the report and the decision. An int is an exit code (bad folds)."""
    import time

    import dagster as dg

    from infra.partitions import FOLDS
    from orchestration.definitions import defs

    def execute(job: str, **kwargs):
        return defs.resolve_job_def(job).execute_in_process(run_config=run_config, instance=instance,
                                                            raise_on_error=False, **kwargs)

    def execute_fold(key: str):
        if args.executor != "celery":
            return execute("fold", partition_key=key)
        # every step of the fold run is a Celery task (orchestration.executors); this process orchestrates
        from orchestration.definitions import reconstructable_job

        if defs.executor.name != "celery":  # the code location was loaded before $REGIMEFLOW_EXECUTOR was set
            raise RuntimeError(f"--executor celery, but the loaded definitions use {defs.executor.name!r}: set "
                               "REGIMEFLOW_EXECUTOR=celery before orchestration.definitions is imported")
        return dg.execute_job(reconstructable_job("fold"), instance=instance, run_config=run_config,
                              tags={"dagster/partition": key, "regimeflow/trigger": "cli"}, raise_on_error=False)

    runs = _MainRuns(execute(args.job))
    runs.blocked = [e for e in runs.first.get_asset_check_evaluations()
                    if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    for e in runs.blocked:
        print(f"blocking check failed: {e.asset_key.to_user_string()}:{e.check_name}; per-fold runs skipped",
              file=sys.stderr)
    if not (runs.first.success and not runs.blocked and args.job == "prepare" and args.folds != "none"):
        return runs
    known = instance.get_dynamic_partitions(FOLDS)
    wanted = known if args.folds == "all" else [k for k in args.folds.split(",") if k]
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        print(f"unknown fold(s) {unknown}; known: {known}", file=sys.stderr)
        return 2
    for i, key in enumerate(wanted, 1):
        print(f"--- fold {key} ({i}/{len(wanted)}) ---", flush=True)
        t0 = time.perf_counter()
        runs.folds.append((key, execute_fold(key), time.perf_counter() - t0))
    if any(r.success for _, r, _ in runs.folds):
        if _yearly_fold_succeeded(runs.folds):
            print("--- walk-forward report ---", flush=True)
            runs.report = execute("report")
        else:
            print("--- walk-forward report: skipped (no yearly fold in this run; see the fold reports) ---", flush=True)
        print("--- daily decision (newest fold) ---", flush=True)
        runs.decide = execute("decide")
    return runs


def _yearly_fold_succeeded(folds: list) -> bool:
    """Whether a yearly fold (key ``YYYY``) ran successfully: the walk-forward report stitches yearly folds
    only, so a run of the seed fold alone (``--profile seed-faithful --folds seed-2008-2019``) skips it."""
    return any(result.success and key.isdigit() for key, result, _ in folds)


def _resolved_settings(wh) -> dict:
    """Run config naming the warehouse file and the data source this process resolved from its environment
    ($REGIMEFLOW_WAREHOUSE, --source / --data-dir), for steps that run in other processes (Celery workers)."""
    market = {k: v for k, v in (("source", os.environ.get("REGIMEFLOW_SOURCE")),
                                ("data_dir", os.environ.get("REGIMEFLOW_DATA_DIR"))) if v}
    warehouse = {"path": str(wh.path)}
    if getattr(wh, "backend", "duckdb") == "ducklake":
        warehouse |= {"lake_catalog": wh.catalog, "lake_data_path": str(wh.data_path)}
    resources: dict = {"warehouse": {"config": warehouse}}
    if market:
        resources["market"] = {"config": market}
    return {"resources": resources}


def cmd_run(args: argparse.Namespace) -> int:
    from orchestration.executors import EXECUTOR_ENV

    os.environ[EXECUTOR_ENV] = args.executor = args.executor or os.environ.get(EXECUTOR_ENV) or "in_process"
    if args.source:
        os.environ["REGIMEFLOW_SOURCE"] = args.source
    if args.data_dir:
        os.environ["REGIMEFLOW_DATA_DIR"] = args.data_dir
    from infra.resources import WarehouseResource
    from orchestration.profiles import load_profile, merge_run_config
    from warehouse.db import deferred_publishing

    wh = WarehouseResource().get()
    if args.fresh:
        if getattr(wh, "backend", "duckdb") == "ducklake":
            print(f"--fresh does not delete a DuckLake ({wh.catalog}): drop its catalog and data files yourself",
                  file=sys.stderr)
            return 2
        for p in (wh.path, wh.snapshot_path):
            p.unlink(missing_ok=True)
        print(f"--fresh: removed {wh.path} and its snapshot")
    _check_readable(wh)
    instance = _instance()
    # the profile's overrides for every job; the analyst snapshot is published once, at the end
    run_config = merge_run_config(load_profile(args.profile),
                                  {"loggers": {"console": {"config": {"log_level": args.log_level}}}})
    if args.executor == "celery":  # workers do not share this process's environment: pin what it resolved
        run_config = merge_run_config(_resolved_settings(wh), run_config)
    try:
        with deferred_publishing():
            runs = _run_main_job(args, run_config, instance)
    except Exception as exc:  # the instance's database going away is an operational failure, said plainly
        lost = _instance_storage_error(exc)
        if lost is None:
            raise
        return _report_instance_lost(lost, "the run")
    finally:
        if wh.exists():
            wh.publish_snapshot()
    if isinstance(runs, int):
        return runs
    _print_summary(wh, runs.first, args.profile)
    _print_folds(runs.folds)
    if runs.report is not None:
        path = WarehouseResource().report_dir() / "walk_forward.html"
        print(f"walk-forward report: {'ok' if runs.report.success else 'FAILED'}  {path if runs.report.success else ''}")
        print(f"fold reports:        {path.parent}/fold_<key>.html")
    _print_stale_inputs(wh)
    if runs.decide is not None:
        _print_latest_decision(wh, runs.decide.success)
    return 0 if runs.ok else 1


def _print_stale_inputs(wh) -> None:
    """The stale tickers / index series of ``ops.input_freshness`` (the ops person's first question)."""
    from warehouse.ops import stale_inputs

    stale = stale_inputs(wh)
    if stale.is_empty():
        print("input freshness:     every ticker and index series has the newest session")
        return
    print(f"input freshness:     {stale.height} STALE input(s) (newest session {stale['reference_date'][0]}):")
    for r in stale.head(15).iter_rows(named=True):
        flag = "  <-- blocks the decision" if r["blocks_decision"] else ""
        print(f"  {r['input']:<8} {r['role']:<10} last row {r['last_date']}, {r['sessions_behind']} session(s) behind{flag}")
    if stale.height > 15:
        print(f"  … {stale.height - 15} more in ops.input_freshness (stale = true)")


def _print_latest_decision(wh, success: bool) -> None:
    from warehouse.decisions import recent_decisions

    if not success:
        print("daily decision:      FAILED (see the decide run's log)")
        return
    row = recent_decisions(wh, 1).row(0, named=True)
    weights = "  ".join(f"{a} {w:.3f}" for a, w in zip(row["assets"], row["target_weights"]))
    tag = "  <-- SYNTHETIC DATA" if row["source"] == "synthetic" else ""
    print(f"daily decision:      {row['decision_date']} (fold {row['fold']}): {weights}{tag}")
    if row["breaker_active"]:
        print(f"circuit breaker:     {row['breaker_reason']}")


def _check_readable(wh) -> None:
    """Open the warehouse once before launching runs, so a file this DuckDB cannot read (``WarehouseVersionError``,
    reported by :func:`main`) stops the command before any run starts."""
    if wh.exists():
        with wh.read():
            pass


def cmd_nightly(args: argparse.Namespace) -> int:
    """One nightly run (what the schedule launches), for hosts that use cron instead of the Dagster daemon."""
    from orchestration.definitions import defs
    from orchestration.jobs import NIGHTLY_RUN_CONFIG
    from infra.resources import WarehouseResource

    _check_readable(WarehouseResource().get())
    instance = _instance()
    run_config = {**NIGHTLY_RUN_CONFIG, "loggers": {"console": {"config": {"log_level": args.log_level}}}}
    try:
        result = defs.resolve_job_def("nightly").execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False, tags={"regimeflow/trigger": "cli"})
    except Exception as exc:
        lost = _instance_storage_error(exc)
        if lost is None:
            raise
        return _report_instance_lost(lost, "the nightly run")
    wh = WarehouseResource().get()
    print(f"nightly run {result.run_id}: {'SUCCESS' if result.success else 'FAILED'}")
    _print_stale_inputs(wh)
    if result.success:
        _print_latest_decision(wh, True)
    return 0 if result.success else 1


def cmd_audit(args: argparse.Namespace) -> int:
    """Replay every logged decision from its logged inputs and compare with the logged weights."""
    from orchestration.audit import replay_log
    from infra.resources import WarehouseResource

    resource = WarehouseResource()
    report = replay_log(resource.get(), resource.artifact_root(), tolerance=args.tolerance)
    print(report.to_string())
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regimeflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the pipeline (default job: main) and print a summary")
    run.add_argument("--job", default="prepare", help="prepare (then every fold: the main job) | ingest")
    run.add_argument("--folds", default="all", help="after prepare: 'all' folds, 'none', or keys like 2019,2020")
    run.add_argument("--source", choices=["auto", "csv", "yahoo", "synthetic"], help="override REGIMEFLOW_SOURCE")
    run.add_argument("--data-dir", help="CSV snapshot directory (overrides REGIMEFLOW_DATA_DIR)")
    run.add_argument("--fresh", action="store_true", help="delete the warehouse first")
    run.add_argument("--profile", default="default",
                     help=f"training profile: {' | '.join(PROFILE_NAMES)} (orchestration/profiles/<name>.yaml) or the "
                     "path of your own run-config YAML; its resource settings apply to every job")
    run.add_argument("--log-level", default="INFO", help="console log level (DEBUG shows every Dagster event)")
    run.add_argument("--executor", choices=["in_process", "celery"], default=None,
                     help="where the fold runs' steps execute: in this process (default; $REGIMEFLOW_EXECUTOR) or "
                     "on Celery workers (needs a Postgres instance in $DAGSTER_HOME, the broker in "
                     "$REGIMEFLOW_CELERY_BROKER and running `celery -A orchestration.celery_app worker` processes)")
    run.set_defaults(func=cmd_run)
    nightly = sub.add_parser("nightly", help="run the nightly job once (incremental ingest → decision)")
    nightly.add_argument("--log-level", default="INFO")
    nightly.set_defaults(func=cmd_nightly)
    audit = sub.add_parser("audit", help="replay the decision log and check every logged weight")
    audit.add_argument("--tolerance", type=float, default=1e-12, help="max |replayed - logged| weight")
    audit.set_defaults(func=cmd_audit)
    args = parser.parse_args(argv)
    from warehouse.db import WarehouseVersionError
    from warehouse.lake import LakeCatalogUnreachable

    try:
        return args.func(args)
    except (WarehouseVersionError, LakeCatalogUnreachable) as exc:
        print(f"regimeflow: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
