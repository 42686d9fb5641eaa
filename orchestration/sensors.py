"""Sensors: new folds, drift / decay retraining, run failures, and the automation-condition sensor.

The retraining sensors read the analysts' snapshot of the warehouse (never the primary file, so a tick
never waits for a running pipeline) and explain every evaluation in their log and cursor (JSON: what was
measured, against which thresholds, and whether it fired). The drift statistics themselves are the
``monitoring/drift`` asset (nightly job); the drift sensor only reads its newest row and applies the cooldown.
"""
import json
from datetime import date, datetime, timezone

import dagster as dg

from infra.partitions import folds_partitions
from infra.resources import MonitoringResource, WarehouseResource
from ml.folds import SEED_FOLD_KEY, pipeline_folds
from orchestration.jobs import fold_job
from orchestration.schedules import TRIGGER_TAG, automation_default_status
from warehouse import ingest as wi
from warehouse.catalog import artifact_records
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
@dg.sensor(name="new_fold_sensor", job=fold_job, minimum_interval_seconds=3600, default_status=_status(),
           description="When a new calendar year of data is complete, add its fold partition and train + "
           "evaluate it (fold job).")
def new_fold_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    snap = warehouse.get().snapshot_reader()
    try:
        calendar = wi.read_calendar(snap)
        trained = artifact_records(snap, "policy_ppo")["fold"].to_list()
    except Exception as exc:  # noqa: BLE001 - no snapshot / no calendar yet
        return dg.SkipReason(f"no warehouse snapshot with a trading calendar yet ({exc})")
    yearly = [f.key for f in pipeline_folds(calendar) if f.key != SEED_FOLD_KEY]
    trained_years = [int(k) for k in trained if k.isdigit()]
    last_day = calendar.max()
    if not trained_years:
        why = "no yearly fold has a trained policy yet: run the main job (regimeflow run) or the fold job first"
        context.update_cursor(json.dumps({"evaluated_at": _now(), "calendar_end": str(last_day), "why": why}))
        return dg.SkipReason(why)
    newest = max(trained_years)
    new = sorted(k for k in yearly if int(k) > newest)
    cursor = {"evaluated_at": _now(), "calendar_end": str(last_day), "newest_trained_fold": str(newest),
              "new_folds": new}
    if not new:
        why = (f"no new fold: the calendar ends {last_day}; fold {newest + 1} needs the whole year "
               f"{newest + 1} (through its last weekday)")
        context.update_cursor(json.dumps({**cursor, "why": why}))
        context.log.info(why)
        return dg.SkipReason(why)
    why = f"data for test year(s) {new} complete (calendar ends {last_day}): adding and training fold(s) {new}"
    context.log.info(why)
    context.update_cursor(json.dumps({**cursor, "why": why}))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=f"new-fold-{k}",
                                    tags={TRIGGER_TAG: "new_fold", REASON_TAG: "new_fold",
                                          DETAIL_TAG: f"test year {k} complete (calendar ends {last_day})"})
                      for k in new],
        dynamic_partitions_requests=[folds_partitions.build_add_request(new)],
    )


# ---------------------------------------------------------------------------------------------- drift
def _sessions_between(calendar, start: date, end: date) -> int:
    return int(calendar.filter((calendar > start) & (calendar <= end)).len())


@dg.sensor(name="drift_sensor", job=fold_job, minimum_interval_seconds=6 * 3600, default_status=_status(),
           description="Reads the newest drift statistics of the deployed fold (monitoring/drift: feature PSI, "
           "sector-HMM regime shift, paper-track decay) → retrain that fold (fold job), with run tags saying why.")
def drift_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource, monitoring: MonitoringResource):
    snap = warehouse.get().snapshot_reader()
    if not snap.path.exists():
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
