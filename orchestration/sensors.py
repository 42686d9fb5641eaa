"""Sensors: new folds, drift / decay retraining, run failures, and the automation-condition sensor.

The retraining sensors read the analysts' snapshot of the warehouse (never the primary file, so a tick
never waits for a running pipeline) and explain every evaluation in their log and cursor (JSON: what was
measured, against which thresholds, and whether it fired). Thresholds: ``MonitoringResource``.
"""
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import dagster as dg
import numpy as np
import polars as pl

from assets._models import load_fold_policy
from ml.envs.market_panel import build_panel
from ml.folds import SEED_FOLD_KEY, pipeline_folds
from ml.monitoring import feature_psi, paper_decay, state_shift
from orchestration.jobs import fold_job
from orchestration.partitions import FOLDS, folds_partitions
from orchestration.resources import MonitoringResource, WarehouseResource
from orchestration.schedules import TRIGGER_TAG, automation_default_status
from warehouse import ingest as wi
from warehouse.artifacts import newest_fold_with
from warehouse.decisions import recent_decisions
from warehouse.folds import read_fold
from warehouse.ops import record_run_failure
from warehouse.regimes_live import read_live_states

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
    except Exception as exc:  # noqa: BLE001 - no snapshot / no calendar yet
        return dg.SkipReason(f"no warehouse snapshot with a trading calendar yet ({exc})")
    folds = {f.key: f for f in pipeline_folds(calendar) if f.key != SEED_FOLD_KEY}
    known = set(context.instance.get_dynamic_partitions(FOLDS))
    known_years = [int(k) for k in known if k.isdigit()]
    last_day = calendar.max()
    if not known_years:
        why = "no yearly fold partition is registered yet: materialize ref/folds (job prepare) first"
        context.update_cursor(json.dumps({"evaluated_at": _now(), "calendar_end": str(last_day), "why": why}))
        return dg.SkipReason(why)
    new = sorted(k for k in folds if int(k) > max(known_years))
    cursor = {"evaluated_at": _now(), "calendar_end": str(last_day), "newest_fold": str(max(known_years)),
              "new_folds": new}
    if not new:
        why = (f"no new fold: the calendar ends {last_day}; fold {max(known_years) + 1} needs the whole year "
               f"{max(known_years) + 1} (through its last weekday)")
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
@dataclass
class DriftReport:
    """One drift/decay evaluation: the deployed fold, the data's last date, each test's numbers."""

    fold: str | None
    last_date: object = None
    fired: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = f"fold {self.fold}, data through {self.last_date}: "
        if self.fired:
            return head + "RETRAIN (" + "; ".join(self.details[k]["why"] for k in self.fired) + ")"
        parts = [v["why"] for v in self.details.values()] + self.notes
        return head + "no retrain (" + "; ".join(parts) + ")"


def _feature_drift(snap, fold, cfg: MonitoringResource, report: DriftReport) -> None:
    policy, _ = load_fold_policy(snap, fold.key)  # SHA-256 checked against models.artifacts
    assets = list(policy.assets)
    panel = build_panel(wi.read_bars(snap, assets), wi.read_index_bars(snap), assets)
    env = policy.env_config
    feats = panel.features(env.term_structure, env.extra_features)
    names = panel.feature_names(env.term_structure, env.extra_features)
    dates = panel.dates.astype("datetime64[D]")
    train = (dates >= np.datetime64(fold.train_start, "D")) & (dates <= np.datetime64(fold.train_end, "D"))
    recent = feats[-cfg.recent_sessions:]
    table = feature_psi(feats[train], recent, names)
    drifted = table.filter(pl.col("psi") > cfg.psi_threshold)
    share = drifted.height / max(table.height, 1)
    top = ", ".join(f"{r['feature']} {r['psi']:.2f}" for r in table.head(3).iter_rows(named=True))
    fired = share >= cfg.psi_feature_share
    report.last_date = panel.date_of(panel.n_dates - 1)
    report.details["feature_drift"] = {
        "fired": fired, "drifted": drifted.height, "features": table.height, "share": round(share, 3),
        "top": top, "why": f"feature PSI: {drifted.height}/{table.height} policy inputs above "
        f"{cfg.psi_threshold} (need share >= {cfg.psi_feature_share}; largest {top})"}
    if fired:
        report.fired.append("feature_drift")


def _regime_shift(snap, fold, cfg: MonitoringResource, report: DriftReport) -> None:
    live = read_live_states(snap, fold.train_start)
    if live.is_empty() or fold.key not in set(live["fold"]):
        report.notes.append(f"HMM shift not tested (no live sector states from fold {fold.key})")
        return
    dates = live["date"].unique().sort()
    recent_start = dates[max(dates.len() - cfg.recent_sessions, 0)]
    train = live.filter(pl.col("date").is_between(fold.train_start, fold.train_end))
    recent = live.filter(pl.col("date") >= recent_start)
    shift = state_shift(train, recent)
    shifted = shift.filter(pl.col("tv_distance") > cfg.hmm_tv_threshold)
    share = shifted.height / max(shift.height, 1)
    fired = shift.height > 0 and share >= cfg.hmm_sector_share
    top = ", ".join(f"{r['sector']} {r['tv_distance']:.2f}" for r in shift.head(3).iter_rows(named=True))
    report.details["regime_shift"] = {
        "fired": fired, "shifted": shifted.height, "sectors": shift.height, "share": round(share, 3), "top": top,
        "why": f"sector HMM state mix: {shifted.height}/{shift.height} sectors with TV distance above "
        f"{cfg.hmm_tv_threshold} (need share >= {cfg.hmm_sector_share}; largest {top})"}
    if fired:
        report.fired.append("regime_shift")


def _paper_decay(snap, fold, cfg: MonitoringResource, report: DriftReport) -> None:
    log = recent_decisions(snap, cfg.decay_sessions + 1)
    log = log.filter(pl.col("fold") == fold.key).drop_nulls(["paper_return", "baseline_return"]) if log.height else log
    if log.height < cfg.decay_sessions:
        report.notes.append(f"paper decay not tested ({log.height}/{cfg.decay_sessions} paper days of fold {fold.key})")
        return
    log = log.tail(cfg.decay_sessions)
    d = paper_decay(log["paper_return"].to_numpy(), log["baseline_return"].to_numpy())
    fired = d["excess_return"] < cfg.decay_min_excess
    report.details["paper_decay"] = {
        "fired": fired, **{k: round(v, 5) for k, v in d.items()},
        "why": f"paper track {d['paper_return']:+.2%} vs equal-weight {d['baseline_return']:+.2%} over "
        f"{d['days']} sessions (excess {d['excess_return']:+.2%}, fires below {cfg.decay_min_excess:+.2%})"}
    if fired:
        report.fired.append("paper_decay")


def evaluate_drift(wh, cfg: MonitoringResource) -> DriftReport:
    """Run the three tests for the deployed fold on warehouse ``wh`` (the sensor passes the snapshot)."""
    key = newest_fold_with(wh, "policy_ppo")
    if key is None:
        return DriftReport(None, notes=["no trained policy yet"])
    fold = read_fold(wh, key)
    report = DriftReport(key)
    _feature_drift(wh, fold, cfg, report)
    _regime_shift(wh, fold, cfg, report)
    _paper_decay(wh, fold, cfg, report)
    return report


def _sessions_between(calendar: pl.Series, start, end) -> int:
    return int(calendar.filter((calendar > start) & (calendar <= end)).len())


@dg.sensor(name="drift_sensor", job=fold_job, minimum_interval_seconds=6 * 3600, default_status=_status(),
           description="Feature drift (PSI), sector-HMM regime shift or paper-track decay of the deployed fold "
           "→ retrain that fold (fold job), with run tags saying why.")
def drift_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource, monitoring: MonitoringResource):
    snap = warehouse.get().snapshot_reader()
    if not snap.path.exists():
        return dg.SkipReason(f"no warehouse snapshot at {snap.path} yet")
    report = evaluate_drift(snap, monitoring)
    cursor = _cursor(context)
    state = {"evaluated_at": _now(), "fold": report.fold, "data_through": str(report.last_date),
             "fired": report.fired, "details": report.details, "notes": report.notes,
             "last_request": cursor.get("last_request")}
    summary = report.summary()
    if report.fired and cursor.get("last_request"):
        since = _sessions_between(wi.read_calendar(snap), datetime.fromisoformat(cursor["last_request"]).date(),
                                  report.last_date)
        if since < monitoring.cooldown_sessions:
            summary += (f" — suppressed: a retrain was requested {since} session(s) ago "
                        f"(cooldown {monitoring.cooldown_sessions})")
            report.fired = []
    state["why"] = summary
    context.log.info(summary)
    if not report.fired:
        context.update_cursor(json.dumps(state, default=str))
        return dg.SkipReason(summary)
    state["last_request"] = str(report.last_date)
    context.update_cursor(json.dumps(state, default=str))
    detail = "; ".join(report.details[k]["why"] for k in report.fired)
    return dg.RunRequest(partition_key=report.fold, run_key=f"drift-{report.fold}-{report.last_date}",
                         tags={TRIGGER_TAG: "drift", REASON_TAG: ",".join(report.fired), DETAIL_TAG: detail[:1000]})


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


automation_sensor = dg.AutomationConditionSensorDefinition(
    "regimeflow_automation", target=dg.AssetSelection.all(), default_status=_status(),
    description="Evaluates the assets' automation conditions (eager refresh of derived tables and the "
    "walk-forward report when their inputs change and the blocking checks passed).",
)

ALL_SENSORS = [new_fold_sensor, drift_sensor, run_failure_recorder, automation_sensor]
