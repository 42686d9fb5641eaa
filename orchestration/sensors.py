"""Sensors: new folds, drift / decay retraining, run failures, and the automation-condition sensor.

The retraining sensors read the analysts' snapshot of the warehouse (never the primary file, so a tick
never waits for a running pipeline) and explain every evaluation in their log and cursor (JSON: what was
measured, against which thresholds, and whether it fired). The drift statistics themselves are the
``monitoring/drift`` asset (nightly job); the drift sensor only reads its newest row and applies the cooldown.
"""
import json
from datetime import date, datetime, timezone

import dagster as dg

from assets.keys import EVAL_FOLD, EVAL_SECTOR_BOOK, EVAL_STOCK_BOOK, MODELS_STOCK_FUNNEL
from infra.partitions import folds_partitions
from infra.resources import MonitoringResource, WarehouseResource
from ml.folds import SEED_FOLD_KEY, pipeline_folds
from orchestration.jobs import fold_job
from orchestration.schedules import TRIGGER_TAG, automation_default_status
from warehouse import ingest as wi
from warehouse.catalog import artifact_records, read_asset, storage
from warehouse.ops import latest_drift_check, record_run_failure

REASON_TAG = "regimeflow/reason"
DETAIL_TAG = "regimeflow/detail"


def _status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if automation_default_status() else dg.DefaultSensorStatus.STOPPED


def _cursor(context) -> dict:
    try:
        return json.loads(context.cursor) if context.cursor else {}
    except json.JSONDecodeError:
        return {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- new folds
#: Sessions a partial fold's evaluation may lag the calendar before the new-fold sensor re-evaluates it.
PARTIAL_EVAL_REFRESH_SESSIONS = 21


def _evaluated_through(snap, key: str) -> date | None:
    """The last earned day of fold ``key``'s evaluation (``eval.fold_metrics.end_date``); None if not evaluated."""
    rows = read_asset(snap, storage(EVAL_FOLD.path), "metrics", folds=[key], columns=["end_date"])
    return rows["end_date"].max() if rows.height else None


def _fold_detail(fold, last_day) -> str:
    if fold.partial:
        return (f"first session of {fold.key} ({fold.test_start}) is in: fold {fold.key} trains on "
                f"{fold.train_start}..{fold.train_end}; its test window is partial (through {last_day}) and grows "
                "session by session")
    return f"test year {fold.key} complete (calendar ends {last_day})"


@dg.sensor(name="new_fold_sensor", job=fold_job, minimum_interval_seconds=3600, default_status=_status(),
           description="On the first session of a new calendar year, add that year's fold partition (its train "
           "window is complete; its test window is partial and grows daily) and train + evaluate it (fold job); "
           "the next decision deploys it. While the newest fold is partial, re-evaluate it (eval/fold only) every "
           f"{PARTIAL_EVAL_REFRESH_SESSIONS} sessions and once its year is complete.")
def new_fold_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    snap = warehouse.get().snapshot_reader()
    try:
        calendar = wi.read_calendar(snap)
        trained = artifact_records(snap, "policy_ppo")["fold"].to_list()
    except Exception as exc:  # noqa: BLE001 - no snapshot / no calendar yet
        return dg.SkipReason(f"no warehouse snapshot with a trading calendar yet ({exc})")
    yearly = {f.key: f for f in pipeline_folds(calendar) if f.key != SEED_FOLD_KEY}
    trained_years = [int(k) for k in trained if k.isdigit()]
    last_day = calendar.max()
    if not trained_years:
        why = "no yearly fold has a trained policy yet: run the main job (regimeflow run) or the fold job first"
        context.update_cursor(json.dumps({"evaluated_at": _now(), "calendar_end": str(last_day), "why": why}))
        return dg.SkipReason(why)
    newest = max(trained_years)
    new = sorted(k for k in yearly if int(k) > newest)
    cursor = {"evaluated_at": _now(), "calendar_end": str(last_day), "newest_trained_fold": str(newest),
              "new_folds": new, "partial_folds": [k for k in new if yearly[k].partial]}
    if new:
        why = "; ".join(f"fold {k}: {_fold_detail(yearly[k], last_day)}" for k in new) + f" → adding and training {new}"
        context.log.info(why)
        context.update_cursor(json.dumps({**cursor, "why": why}))
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=k, run_key=f"new-fold-{k}",
                                        tags={TRIGGER_TAG: "new_fold", REASON_TAG: "new_fold",
                                              DETAIL_TAG: _fold_detail(yearly[k], last_day)})
                          for k in new],
            dynamic_partitions_requests=[folds_partitions.build_add_request(new)],
        )
    # no new fold: keep the newest fold's evaluation up with its growing (or just completed) test window
    fold = yearly.get(str(newest))
    through = _evaluated_through(snap, fold.key) if fold is not None else None
    if fold is not None and through is not None and through < fold.test_end:
        lag = _sessions_between(calendar, through, fold.test_end)
        if lag >= PARTIAL_EVAL_REFRESH_SESSIONS or not fold.partial:
            why = (f"fold {fold.key}'s evaluation ends {through}, its test window now {fold.test_end} "
                   f"({lag} session(s) later{', the year is complete' if not fold.partial else ''}): "
                   "re-evaluating it (eval/fold, eval/sector_book, and the stock book's funnel scores and evaluation; the "
                   "models stay; the walk-forward reports follow)")
            context.log.info(why)
            context.update_cursor(json.dumps({**cursor, "evaluated_through": str(through), "why": why}))
            return dg.RunRequest(partition_key=fold.key, run_key=f"refresh-eval-{fold.key}-{fold.test_end}",
                                 asset_selection=[EVAL_FOLD, EVAL_SECTOR_BOOK, MODELS_STOCK_FUNNEL, EVAL_STOCK_BOOK],
                                 tags={TRIGGER_TAG: "partial_fold_eval", REASON_TAG: "partial_fold_eval",
                                       DETAIL_TAG: why[:1000]})
    why = (f"no new fold: the calendar ends {last_day}; fold {newest + 1} is added on the first session of "
           f"{newest + 1}")
    if fold is not None and fold.partial:
        why += (f"; fold {fold.key} is partial (evaluated through {through or 'not yet'}, re-evaluated every "
                f"{PARTIAL_EVAL_REFRESH_SESSIONS} sessions)")
    context.update_cursor(json.dumps({**cursor, "evaluated_through": str(through) if through else None,
                                      "why": why}))
    context.log.info(why)
    return dg.SkipReason(why)


# ---------------------------------------------------------------------------------------------- drift
def _sessions_between(calendar, start: date, end: date) -> int:
    return int(calendar.filter((calendar > start) & (calendar <= end)).len())


@dg.sensor(name="drift_sensor", job=fold_job, minimum_interval_seconds=6 * 3600, default_status=_status(),
           description="Reads the newest drift statistics of the deployed fold (monitoring/drift: feature PSI, "
           "sector-HMM regime shift, paper-track decay) → retrain that fold (fold job), with run tags saying why.")
def drift_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource, monitoring: MonitoringResource):
    snap = warehouse.get().snapshot_reader()
    if not snap.exists():
        return dg.SkipReason(f"no warehouse snapshot at {snap.path} yet")
    check = latest_drift_check(snap)
    if check is None:
        return dg.SkipReason("no drift statistics yet: materialize monitoring/drift (jobs decide or nightly)")
    cursor = _cursor(context)
    fired = list(check["fired"] or [])
    details = json.loads(check["details"] or "{}")
    data_through = check["data_through"]
    state = {"evaluated_at": _now(), "statistics_at": str(check["evaluated_at"]), "fold": check["fold"],
             "data_through": str(data_through), "fired": fired, "details": details, "notes": list(check["notes"] or []),
             "last_request": cursor.get("last_request")}
    summary = check["summary"]
    cooldown = monitoring.config().cooldown_sessions
    if fired and cursor.get("last_request"):
        since = _sessions_between(wi.read_calendar(snap), date.fromisoformat(cursor["last_request"]), data_through)
        if since < cooldown:
            summary += f" — suppressed: a retrain was requested {since} session(s) ago (cooldown {cooldown})"
            fired = []
    state["why"] = summary
    context.log.info(summary)
    if not fired:
        context.update_cursor(json.dumps(state, default=str))
        return dg.SkipReason(summary)
    state["last_request"] = str(data_through)
    context.update_cursor(json.dumps(state, default=str))
    detail = "; ".join(details[k]["why"] for k in fired)
    return dg.RunRequest(partition_key=check["fold"], run_key=f"drift-{check['fold']}-{data_through}",
                         tags={TRIGGER_TAG: "drift", REASON_TAG: ",".join(fired), DETAIL_TAG: detail[:1000]})


# ---------------------------------------------------------------------------------------------- failures
@dg.run_failure_sensor(name="run_failure_recorder", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Records every failed run (job, partition, trigger, failed steps, error) in "
                       "ops.run_failures and the sensor log.")
def run_failure_recorder(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
    run = context.dagster_run
    steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    message = context.failure_event.message or ""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data is not None and data.error is not None:
            message += f"\n[{event.step_key}] {data.error.message.strip()}"
    tags = dict(run.tags)
    record = context.instance.get_run_record_by_id(run.run_id)
    end = record.end_time if record is not None and record.end_time else datetime.now(timezone.utc).timestamp()
    failed_at = datetime.fromtimestamp(end, timezone.utc).replace(tzinfo=None)
    context.log.error(f"run {run.run_id} of job {run.job_name} failed "
                      f"(partition {tags.get('dagster/partition')}, trigger {tags.get(TRIGGER_TAG)}): steps {steps}")
    wh = warehouse.get()
    wh.lock_timeout_s = min(wh.lock_timeout_s, 30.0)  # never hold a sensor tick for long; retried next tick
    record_run_failure(wh, run.run_id, run.job_name, tags.get("dagster/partition"), tags, failed_at, steps,
                       message)
    wh.publish_if_written()  # analysts see the failure record now, not after the next run


automation_sensor = dg.AutomationConditionSensorDefinition(
    "regimeflow_automation", target=dg.AssetSelection.all(), default_status=_status(),
    description="Evaluates the assets' automation conditions (eager refresh of derived tables and the "
    "walk-forward report when their inputs change and the blocking checks passed).",
)

ALL_SENSORS = [new_fold_sensor, drift_sensor, run_failure_recorder, automation_sensor]
