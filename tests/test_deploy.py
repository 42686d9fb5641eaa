"""The service deployment example: deploy/dagster.yaml is a valid Dagster instance config."""
import shutil
import warnings
from pathlib import Path

import dagster as dg

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_deploy_instance_config_loads_with_one_run_at_a_time(tmp_path, monkeypatch):
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("REGIMEFLOW_DAGSTER_LOGS", str(tmp_path / "logs"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated keys
        instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        assert Path(instance.compute_log_manager._base_dir) == tmp_path / "logs"
    finally:
        instance.dispose()
    for unit in ("regimeflow-daemon.service", "regimeflow-webserver.service"):
        text = (DEPLOY / unit).read_text()
        assert "EnvironmentFile=" in text and "-w workspace.yaml" in text
    assert "DAGSTER_HOME=" in (DEPLOY / "regimeflow.env").read_text()
