"""Where a run's steps execute.

* ``in_process`` (default): every step of a run in the run's own process, one after another. On a small
  machine each heavy step (PPO's update threads, the prescreen's worker processes) already uses every core.
* ``celery``: each step is a Celery task on the Redis broker, picked up by worker processes
  (``celery -A orchestration.celery_app worker``) on this or other machines; independent steps of a run (a
  fold's HMMs, prescreen, PPO, SAC, TD3, ...) run in parallel on different workers. Steps go to queue ``cpu``
  unless tagged for another one (:mod:`infra.queues`: the RL learners go to ``$REGIMEFLOW_RL_QUEUE``,
  e.g. ``gpu``, when it is set). Needs an instance every process can reach (Postgres:
  ``deploy/cluster/dagster.yaml``) and workers started with the same broker.

Chosen by ``$REGIMEFLOW_EXECUTOR``; broker / result backend by ``$REGIMEFLOW_CELERY_BROKER`` and
``$REGIMEFLOW_CELERY_BACKEND`` (default: the broker). The launching process and the workers must agree.
"""
from __future__ import annotations

import os
from typing import Any

import dagster as dg

from infra.queues import CPU_QUEUE

EXECUTOR_ENV = "REGIMEFLOW_EXECUTOR"
BROKER_ENV = "REGIMEFLOW_CELERY_BROKER"
BACKEND_ENV = "REGIMEFLOW_CELERY_BACKEND"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
EXECUTORS = ("in_process", "celery")


def executor_name() -> str:
    name = os.environ.get(EXECUTOR_ENV, "in_process").strip().lower() or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"${EXECUTOR_ENV}={name!r}: choose one of {list(EXECUTORS)}")
    return name


def celery_settings() -> dict[str, Any]:
    """The Celery app settings shared by the executor (launching side) and the workers.

    Late acknowledgement + reject on worker loss: a step whose worker dies mid-task goes back to the queue and
    runs again on another worker (steps are idempotent: each materialization writes in one transaction). One
    task prefetched per worker process: a long training step never holds a second one hostage. The Redis
    visibility timeout bounds how long a task taken by a worker that vanished (machine lost) stays invisible.
    """
    broker = os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    return {
        "broker": broker,
        "backend": os.environ.get(BACKEND_ENV) or broker,
        "config_source": {
            "task_default_queue": CPU_QUEUE,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {"visibility_timeout": 4 * 3600, "max_retries": 3, "interval_start": 0,
                                         "interval_step": 0.2, "interval_max": 0.5},
            "result_expires": 7 * 24 * 3600,
        },
    }


def default_executor() -> dg.ExecutorDefinition:
    """The executor of every job (``$REGIMEFLOW_EXECUTOR``; module docstring)."""
    if executor_name() == "in_process":
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_settings(), name="celery")
