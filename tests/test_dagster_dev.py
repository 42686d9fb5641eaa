"""`dagster dev` (webserver + daemon) loads the code location; the UI's GraphQL API lists assets and checks."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["data"]


@pytest.mark.slow
def test_dagster_dev_lists_assets_and_checks(tmp_path):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "REGIMEFLOW_WAREHOUSE": str(tmp_path / "wh.duckdb")}
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
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
