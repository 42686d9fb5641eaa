"""Executor selection ($REGIMEFLOW_EXECUTOR), the Celery settings workers and launcher share, and the RL steps'
queue tags."""
from __future__ import annotations

import dagster as dg
import pytest

from orchestration import executors


def test_in_process_by_default_and_a_clear_error_for_an_unknown_executor(monkeypatch):
    monkeypatch.delenv(executors.EXECUTOR_ENV, raising=False)
    assert executors.default_executor() is dg.in_process_executor
    monkeypatch.setenv(executors.EXECUTOR_ENV, "threads")
    with pytest.raises(ValueError, match=r"REGIMEFLOW_EXECUTOR='threads': choose one of \['in_process', 'celery'\]"):
        executors.default_executor()


def test_celery_executor_uses_the_broker_of_the_environment_with_late_acks(monkeypatch):
    monkeypatch.setenv(executors.EXECUTOR_ENV, "celery")
    monkeypatch.setenv(executors.BROKER_ENV, "redis://queue.internal:6379/2")
    monkeypatch.delenv(executors.BACKEND_ENV, raising=False)
    executor = executors.default_executor()
    assert executor.name == "celery"
    settings = executors.celery_settings()
    assert settings["broker"] == settings["backend"] == "redis://queue.internal:6379/2"
    conf = settings["config_source"]
    assert conf["task_default_queue"] == "cpu" and conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1


def test_the_worker_app_and_the_executor_share_broker_backend_and_settings():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, executors.BROKER_ENV: "redis://127.0.0.1:6390/0",
           executors.BACKEND_ENV: "redis://127.0.0.1:6390/1", "PYTHONPATH": str(Path(__file__).parents[1])}
    code = ("import json; from orchestration.celery_app import app; c = app.conf; print(json.dumps([c.broker_url, "
            "c.result_backend, c.task_acks_late, c.task_reject_on_worker_lost, c.task_default_queue, "
            "c.worker_prefetch_multiplier, 'execute_plan' in app.tasks]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == ["redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/1", True,
                                                       True, "cpu", 1, True]


def test_rl_learners_carry_the_rl_queue_and_other_steps_none():
    from orchestration.definitions import defs

    tagged = {key.to_user_string() for key, node in
              ((k, defs.resolve_assets_def(k)) for k in defs.resolve_asset_graph().get_all_asset_keys())
              if node.op.tags.get("dagster-celery/queue") == "cpu"}
    assert tagged == {"models/policy_ppo", "models/policy_sac", "models/policy_td3", "models/stock_rl",
                      "models/pairs_qrdqn"}


def test_the_cli_tells_a_lost_instance_database_from_a_warehouse_error():
    """Postgres / SQLAlchemy connection failures anywhere in the chain mean the instance's database went away
    (exit 3, orchestration.cli); DuckDB's own OperationalError and other errors are not that."""
    import duckdb
    import sqlalchemy.exc

    from orchestration.cli import _instance_storage_error

    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    try:
        try:
            raise lost
        except sqlalchemy.exc.OperationalError as inner:
            raise RuntimeError("too many retries for DB connection") from inner
    except RuntimeError as outer:
        assert _instance_storage_error(outer) is lost
    assert _instance_storage_error(duckdb.OperationalError("disk full")) is None
    assert _instance_storage_error(ValueError("bad config")) is None
