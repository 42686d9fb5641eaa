"""Replay the decision audit log: every logged decision is recomputed from its logged inputs (observation,
VIX, trailing drawdown, breaker config) with the logged checkpoint (located relative to the artifact root,
SHA-256 verified), and compared with the logged weights. Used by ``regimeflow audit`` and the tests."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from pathlib import Path

from ml.agents.checkpoint import CheckpointError, load_checkpoint
from ml.decisions import replay_decision
from ml.risk import CircuitBreakerConfig
from warehouse.decisions import read_decisions


@dataclass(frozen=True)
class AuditReport:
    rows: pl.DataFrame  # decision_date, fold, checkpoint_ok, max_abs_diff_policy, max_abs_diff_target, ok
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.rows.height > 0 and bool(self.rows["ok"].all())

    def to_string(self) -> str:
        if self.rows.is_empty():
            return "decision log is empty: nothing to audit"
        bad = self.rows.filter(~pl.col("ok"))
        worst = float(self.rows["max_abs_diff_target"].max())
        head = (f"{self.rows.height} decisions replayed ({self.rows['decision_date'].min()} .. "
                f"{self.rows['decision_date'].max()}): {self.rows.height - bad.height} match, {bad.height} differ "
                f"(largest |replayed - logged| weight {worst:.3g}, tolerance {self.tolerance:g})")
        return head if bad.is_empty() else head + "\n" + str(bad)


def replay_log(wh, artifact_root: Path, tolerance: float = 1e-12) -> AuditReport:
    """Replay every row of ``decisions.daily`` in ``wh``; checkpoints are ``artifact_root / checkpoint_path``."""
    log = read_decisions(wh)

    @lru_cache(maxsize=8)
    def policy(path: str, sha: str):
        try:
            return load_checkpoint(Path(artifact_root) / path, sha256=sha)
        except CheckpointError:
            return None

    rows = []
    for r in log.iter_rows(named=True):
        ppo = policy(r["checkpoint_path"], r["checkpoint_sha256"])
        if ppo is None:
            rows.append({"decision_date": r["decision_date"], "fold": r["fold"], "checkpoint_ok": False,
                         "max_abs_diff_policy": float("nan"), "max_abs_diff_target": float("nan"), "ok": False})
            continue
        breaker = CircuitBreakerConfig(**json.loads(r["breaker_config"])) if r["breaker_enabled"] else None
        w_policy, w_target = replay_decision(ppo, r["observation"], r["assets"][:-1], r["vix"],
                                             r["trailing_drawdown"], breaker)
        d_pol = float(np.max(np.abs(w_policy - np.asarray(r["policy_weights"]))))
        d_tgt = float(np.max(np.abs(w_target - np.asarray(r["target_weights"]))))
        rows.append({"decision_date": r["decision_date"], "fold": r["fold"], "checkpoint_ok": True,
                     "max_abs_diff_policy": d_pol, "max_abs_diff_target": d_tgt,
                     "ok": d_pol <= tolerance and d_tgt <= tolerance})
    schema = {"decision_date": pl.Date, "fold": pl.Utf8, "checkpoint_ok": pl.Boolean,
              "max_abs_diff_policy": pl.Float64, "max_abs_diff_target": pl.Float64, "ok": pl.Boolean}
    return AuditReport(pl.DataFrame(rows, schema=schema), tolerance)
