"""Training profiles: named sets of resource settings, chosen with ``REGIMEFLOW_PROFILE`` or
``regimeflow run --profile``.

* ``default``: the whole main job on the real snapshot (15 folds) in ~15 minutes on a 2-core machine
  (PPO 1M env steps per fold).
* ``large``: longer training for research runs (PPO 4M env steps per fold, 10 HMM restarts, denser
  prescreen training rows and 5 CV splits): ~39 minutes. On the real snapshot its PPO overfits
  (walk-forward Sharpe 0.65 vs 1.02), so it is not the default.

Anything set in the Dagster launchpad still overrides these per run.
"""
import os

PROFILE_ENV = "REGIMEFLOW_PROFILE"

PROFILES: dict[str, dict[str, dict]] = {
    "default": {},
    "large": {
        "policy": {"total_steps": 4_000_000},
        "regimes": {"hmm_restarts": 10},
        "prescreen": {"sample_every": 2, "cv_splits": 5},
    },
}


def profile_name() -> str:
    name = os.environ.get(PROFILE_ENV, "default")
    if name not in PROFILES:
        raise ValueError(f"unknown {PROFILE_ENV}={name!r}; choose one of {sorted(PROFILES)}")
    return name


def profile_settings(resource: str) -> dict:
    """Overrides of ``resource``'s defaults for the active profile."""
    return dict(PROFILES[profile_name()].get(resource, {}))
