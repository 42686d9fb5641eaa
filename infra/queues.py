"""Celery queues of the steps (``orchestration.executors``): every step goes to queue ``cpu`` unless its asset
carries a queue tag. The RL learners (PPO, SAC, TD3, the stock RL ensemble, the QR-DQN pair policy) carry
``$REGIMEFLOW_RL_QUEUE`` (default ``cpu``; ``gpu`` sends them to the workers of GPU hosts). The tag is read
when the code location loads: set the variable in the environment of the webserver, daemon and launcher."""
from __future__ import annotations

import os

QUEUE_TAG = "dagster-celery/queue"
CPU_QUEUE = "cpu"
RL_QUEUE_ENV = "REGIMEFLOW_RL_QUEUE"


def rl_step_tags() -> dict[str, str]:
    """Op tags of an RL learner's step: its Celery queue."""
    return {QUEUE_TAG: os.environ.get(RL_QUEUE_ENV) or CPU_QUEUE}
