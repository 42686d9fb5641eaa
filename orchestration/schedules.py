"""The nightly schedule: weekdays after the US close, in New York time.

Default cron ``30 18 * * 1-5`` (18:30 America/New_York, Monday–Friday): after the 16:00 equity close,
the 16:15 VIX close and the time data vendors need to publish the day's bars. Override with
``REGIMEFLOW_NIGHTLY_CRON`` (and ``REGIMEFLOW_NIGHTLY_TZ``) at code-location load.

Holidays need no calendar here: a night without a new session ingests nothing new and decides nothing
(logged), and a missed night is caught up by the next run (every session after the last decision gets one).
"""
import os

import dagster as dg

from orchestration.jobs import NIGHTLY_RUN_CONFIG, nightly_job

CRON_ENV, TZ_ENV, AUTOMATION_ENV = "REGIMEFLOW_NIGHTLY_CRON", "REGIMEFLOW_NIGHTLY_TZ", "REGIMEFLOW_AUTOMATION"
DEFAULT_CRON, DEFAULT_TZ = "30 18 * * 1-5", "America/New_York"
TRIGGER_TAG = "regimeflow/trigger"


def automation_default_status() -> bool:
    """Schedules and retraining sensors start RUNNING when ``REGIMEFLOW_AUTOMATION=on`` (unattended
    deployments), else STOPPED until someone turns them on in the UI (Automation tab)."""
    return os.environ.get(AUTOMATION_ENV, "").strip().lower() in {"1", "on", "true", "yes"}


@dg.schedule(
    name="nightly_schedule",
    job=nightly_job,
    cron_schedule=os.environ.get(CRON_ENV, DEFAULT_CRON),
    execution_timezone=os.environ.get(TZ_ENV, DEFAULT_TZ),
    default_status=dg.DefaultScheduleStatus.RUNNING if automation_default_status() else dg.DefaultScheduleStatus.STOPPED,
    description="Nightly incremental ingest → features → checks → regimes → daily decision (weekdays after the "
    "US close, New York time).",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(run_key=f"nightly-{day}", run_config=NIGHTLY_RUN_CONFIG,
                         tags={TRIGGER_TAG: "schedule", "regimeflow/scheduled_date": day})
