"""Training profiles: run-config YAML files (``<name>.yaml`` next to this module) that override resource
settings for every run of a job. ``regimeflow run --profile large`` merges one into the run config of each
job it launches; in the Dagster UI, paste the file's content into the launchpad (or ``dagster job execute
-c orchestration/profiles/large.yaml``). Nothing is read at import time: the code location always loads
the ``ml`` defaults, and a profile only ever overrides them for the runs it is given to.

* ``default``: no overrides - the whole main job on the real snapshot (15 folds, PPO 1M env steps each).
* ``large``: longer training for research runs (PPO 4M env steps per fold, 10 HMM restarts, denser
  prescreen training rows and 5 CV splits). On the real snapshot its PPO overfits (walk-forward Sharpe
  0.65 vs 1.02), so it is not the default.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PROFILE_NAMES: tuple[str, ...] = ("default", "large", "seed-faithful")


def profile_path(name: str):
    """A shipped profile by name, or any run-config YAML file by path (your own profile)."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"profile file {name} does not exist")
        return path
    if name not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {name!r}; choose one of {list(PROFILE_NAMES)} or a .yaml file")
    return resources.files("orchestration.profiles").joinpath(f"{name}.yaml")


def load_profile(name: str) -> dict[str, Any]:
    """The profile's run config (``{"resources": {...}}``; empty for ``default``)."""
    return yaml.safe_load(profile_path(name).read_text()) or {}


def merge_run_config(*configs: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of run-config dicts, later ones winning."""
    out: dict[str, Any] = {}
    for cfg in configs:
        for k, v in (cfg or {}).items():
            out[k] = merge_run_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
