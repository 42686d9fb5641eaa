"""The Celery app of regimeflow's step workers (``--executor celery``; :mod:`orchestration.executors`).

Start a worker on any machine that has this repository, the same ``$DAGSTER_HOME`` instance (Postgres) and
the same broker settings::

    celery -A orchestration.celery_app worker -Q cpu --concurrency 1 -n cpu1@%h
    celery -A orchestration.celery_app worker -Q gpu --concurrency 1 -n gpu1@%h   # with REGIMEFLOW_RL_QUEUE=gpu

(``deploy/cluster/regimeflow-worker@.service`` runs the same command as a service.) Each task executes one step: it loads the job from
``orchestration.definitions``, the run from the instance, and reads / writes data through the IO managers.
"""
from __future__ import annotations

from dagster_celery.config import DEFAULT_CONFIG, dict_wrapper
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from orchestration.executors import celery_settings

_settings = celery_settings()
# the same app arguments as the executor's side (dagster_celery.executor.CeleryExecutor.app_args)
app = make_app({"broker": _settings["broker"], "backend": _settings["backend"], "include": [],
                "config_source": dict_wrapper({**DEFAULT_CONFIG, **_settings["config_source"]})})
execute_plan = create_task(app)
