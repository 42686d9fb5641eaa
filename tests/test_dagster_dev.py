"""`dagster dev` (webserver + daemon) loads the code location; the UI's GraphQL API lists assets, checks, the
nightly schedule and the sensors, and a run launched through the API succeeds on synthetic data."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

QUERY = """
{
  workspaceOrError { ... on Workspace { locationEntries { name loadStatus
      locationOrLoadError { __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } groupName
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } }
}
"""


DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
REPO_SELECTOR = '{repositoryLocationName: "regimeflow", repositoryName: "__repository__"}'
AUTOMATION = f"""
{{
  schedulesOrError(repositorySelector: {REPO_SELECTOR}) {{ __typename
    ... on Schedules {{ results {{ name cronSchedule executionTimezone pipelineName scheduleState {{ status }} }} }} }}
  sensorsOrError(repositorySelector: {REPO_SELECTOR}) {{ __typename
    ... on Sensors {{ results {{ name sensorType sensorState {{ status }} }} }} }}
}}
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } } }
}
"""
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["data"]


@pytest.mark.slow
def test_dagster_dev_lists_assets_checks_schedule_sensors_and_runs_a_job(tmp_path):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "REGIMEFLOW_WAREHOUSE": str(tmp_path / "wh.duckdb"),
           "REGIMEFLOW_SOURCE": "synthetic"}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline, data = time.time() + 120, None
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                data = _graphql(port, QUERY)
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    break
            except OSError:
                pass
            time.sleep(1)
        assert data is not None, "webserver never answered"
        entry = data["workspaceOrError"]["locationEntries"][0]
        assert entry["name"] == "regimeflow"
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert {"raw/bars", "raw/index_bars", "ref/sectors", "ref/trading_calendar"} <= set(nodes)
        assert nodes["raw/bars"]["groupName"] == "ingestion"
        checks = {c["name"]: c["blocking"] for c in nodes["raw/bars"]["assetChecksOrError"]["checks"]}
        assert checks["bars_high_ge_open_close"] is True and checks["bars_extreme_returns"] is False
        index_checks = {c["name"] for c in nodes["raw/index_bars"]["assetChecksOrError"]["checks"]}
        assert {"index_vix_range", "index_vix3m_present"} <= index_checks
        # the daemon (schedules, sensors, run queue) runs beside the webserver
        healthy: set[str] = set()
        while time.time() < deadline and "SENSOR" not in healthy:
            statuses = _graphql(port, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            healthy = {d["daemonType"] for d in statuses if d["healthy"]}
            time.sleep(1)
        assert {"SENSOR", "SCHEDULER"} <= healthy, statuses
        # the nightly schedule and the sensors are registered
        auto = _graphql(port, AUTOMATION)
        schedules = {r["name"]: r for r in auto["schedulesOrError"]["results"]}
        assert schedules["nightly_schedule"]["cronSchedule"] == "30 18 * * 1-5"
        assert schedules["nightly_schedule"]["executionTimezone"] == "America/New_York"
        assert schedules["nightly_schedule"]["pipelineName"] == "nightly"
        sensors = {r["name"]: r for r in auto["sensorsOrError"]["results"]}
        assert {"new_fold_sensor", "drift_sensor", "run_failure_recorder", "regimeflow_automation"} <= set(sensors)
        assert sensors["run_failure_recorder"]["sensorType"] == "RUN_STATUS"
        assert sensors["run_failure_recorder"]["sensorState"]["status"] == "RUNNING"
        assert sensors["regimeflow_automation"]["sensorType"] == "AUTO_MATERIALIZE"  # automation-condition sensor
        # a run launched through the API (what the Launchpad does) succeeds on synthetic data
        params = {"selector": {"repositoryLocationName": "regimeflow", "repositoryName": "__repository__",
                               "jobName": "prepare"}, "runConfigData": {}}
        launched = _graphql(port, LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id, status = launched["run"]["runId"], None
        run_deadline = time.time() + 300
        while time.time() < run_deadline and status not in {"SUCCESS", "FAILURE", "CANCELED"}:
            time.sleep(2)
            status = _graphql(port, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        assert status == "SUCCESS", status
        import duckdb

        con = duckdb.connect(str(tmp_path / "wh_read.duckdb"), read_only=True)
        try:
            assert con.execute("SELECT DISTINCT source FROM raw.bars").fetchall() == [("synthetic",)]
            assert con.execute("SELECT count(*) FROM ref.folds").fetchall()[0][0] >= 10
        finally:
            con.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
