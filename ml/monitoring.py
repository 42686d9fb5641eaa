"""Drift and decay statistics that decide whether a deployed fold's models should be retrained.

Everything compares a *reference* sample (the fold's training window) with a *recent* sample (the
last N sessions, known at the close of the latest date):

* :func:`psi` / :func:`feature_psi`: population stability index per input feature. Bins are the
  reference deciles (edges from the reference only); ``PSI = sum((q - p) * ln(q / p))`` with shares
  floored at ``1e-4``. Rule of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25 a significant shift.
* :func:`state_shift`: total-variation distance ``0.5 * sum |p - q|`` between the share of days in
  each HMM state in the two samples (0 = same regime mix, 1 = disjoint).
* :func:`paper_decay`: cumulative return of the live (paper) track minus that of its baseline over
  the same days.

:func:`evaluate_drift` runs the three tests for the deployed fold with :class:`DriftConfig`'s thresholds
(the ``monitoring/drift`` asset; the drift sensor only reads its verdict).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DriftConfig", "DriftReport", "evaluate_drift", "feature_psi", "paper_decay", "psi", "state_shift"]

_FLOOR = 1e-4


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``recent`` against ``reference`` (1-D, NaNs dropped).

    Edges are the reference's distinct deciles, so binary or constant features get 2 bins. NaN when
    either sample is empty."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(recent, dtype=np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1) / cur.size
    p, q = np.maximum(p, _FLOOR), np.maximum(q, _FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def feature_psi(reference: np.ndarray, recent: np.ndarray, names: Sequence[str], bins: int = 10) -> pl.DataFrame:
    """PSI per column of ``reference [n, F]`` vs ``recent [m, F]``: ``feature, psi``, largest first."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(recent, dtype=np.float64)
    if ref.shape[1] != len(names) or cur.shape[1] != len(names):
        raise ValueError(f"{len(names)} names for {ref.shape[1]} / {cur.shape[1]} columns")
    values = [psi(ref[:, j], cur[:, j], bins) for j in range(len(names))]
    return pl.DataFrame({"feature": list(names), "psi": values}).sort("psi", descending=True, nulls_last=True)


def state_shift(reference: pl.DataFrame, recent: pl.DataFrame, group: str = "sector",
                state: str = "state") -> pl.DataFrame:
    """Per ``group``: total-variation distance between the state shares of ``reference`` and ``recent``
    (rows with a null state are ignored). Columns: ``group, tv_distance, reference_shares, recent_shares``
    (shares as ``{state: share}`` JSON strings), largest distance first. Groups missing from
    ``recent`` are left out."""

    def shares(frame: pl.DataFrame) -> pl.DataFrame:
        return (frame.drop_nulls(state).group_by(group, state).len()
                .with_columns((pl.col("len") / pl.col("len").sum().over(group)).alias("share")))

    ref, cur = shares(reference), shares(recent)
    rows = []
    for g in sorted(set(cur[group]) & set(ref[group])):
        p = dict(ref.filter(pl.col(group) == g).select(state, "share").iter_rows())
        q = dict(cur.filter(pl.col(group) == g).select(state, "share").iter_rows())
        tv = 0.5 * sum(abs(p.get(s, 0.0) - q.get(s, 0.0)) for s in set(p) | set(q))
        rows.append({group: g, "tv_distance": tv,
                     "reference_shares": json.dumps({k: round(v, 4) for k, v in sorted(p.items())}),
                     "recent_shares": json.dumps({k: round(v, 4) for k, v in sorted(q.items())})})
    if not rows:
        return pl.DataFrame(schema={group: pl.Utf8, "tv_distance": pl.Float64})
    return pl.DataFrame(rows).sort("tv_distance", descending=True)


def paper_decay(paper_returns: np.ndarray, baseline_returns: np.ndarray) -> dict[str, float]:
    """Cumulative return of the paper track, of the baseline, and their difference (fractions)."""
    p = np.asarray(paper_returns, dtype=np.float64)
    b = np.asarray(baseline_returns, dtype=np.float64)
    if p.shape != b.shape:
        raise ValueError("paper and baseline returns must cover the same days")
    paper, base = float(np.prod(1.0 + p) - 1.0), float(np.prod(1.0 + b) - 1.0)
    return {"days": int(p.size), "paper_return": paper, "baseline_return": base, "excess_return": paper - base}


class DriftConfig(BaseModel):
    """Thresholds of the drift / decay tests. Calibrated on the real snapshot so that a request means a real
    shift: the policy's inputs are persistent (VIX level, 21-day vol), so short windows always look
    "drifted" (with 63 sessions and PSI > 0.25, 100% of month-ends 2013-2025 would fire). With these
    defaults the feature test fired at 24 of 156 month-ends, clustered in 2013 (taper), 2017 (record-low
    volatility) and 2022 (rate shock); the HMM test at 2 of 24 month-ends of fold 2024's test/live period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recent_sessions: int = Field(default=126, ge=2, description="recent window compared with the fold's training "
                                 "window, for the feature and HMM tests (sessions, ~6 months)")
    psi_threshold: float = Field(default=1.0, gt=0, description="PSI above which one policy input counts as drifted")
    psi_feature_share: float = Field(default=0.5, gt=0, le=1, description="fire when at least this share of the "
                                     "policy's inputs drifted")
    hmm_tv_threshold: float = Field(default=0.5, gt=0, le=1, description="total-variation distance of a sector's "
                                    "HMM state mix (recent vs train) above which the sector counts as shifted")
    hmm_sector_share: float = Field(default=0.6, gt=0, le=1, description="fire when at least this share of "
                                    "sectors shifted")
    decay_sessions: int = Field(default=63, ge=2, description="paper-track window of the decay test (sessions)")
    decay_min_excess: float = Field(default=-0.05, description="fire when the paper track trails its equal-weight "
                                    "baseline by more than this over the window (fraction; fold 2024's PPO stayed "
                                    "within -2.4% of equal weight over any 63 days of 2024)")
    cooldown_sessions: int = Field(default=63, ge=0, description="sessions after a retrain request during which "
                                   "the drift sensor does not ask again")


@dataclass
class DriftReport:
    """One drift/decay evaluation: the deployed fold, the data's last date, each test's numbers."""

    fold: str | None
    last_date: date | None = None
    fired: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_frame(self, config: DriftConfig) -> pl.DataFrame:
        """One ``ops.drift_checks`` row: when, which fold, data through, what fired, the numbers (JSON), the
        thresholds in force."""
        from datetime import datetime, timezone

        return pl.DataFrame({
            "evaluated_at": [datetime.now(timezone.utc).replace(tzinfo=None)], "fold": [self.fold],
            "data_through": [self.last_date], "fired": [self.fired], "summary": [self.summary()],
            "details": [json.dumps(self.details, default=str)], "notes": [self.notes],
            "thresholds": [json.dumps(config.model_dump())],
        }, schema={"evaluated_at": pl.Datetime("us"), "fold": pl.Utf8, "data_through": pl.Date,
                   "fired": pl.List(pl.Utf8), "summary": pl.Utf8, "details": pl.Utf8, "notes": pl.List(pl.Utf8),
                   "thresholds": pl.Utf8})

    def summary(self) -> str:
        head = f"fold {self.fold}, data through {self.last_date}: "
        if self.fired:
            return head + "RETRAIN (" + "; ".join(self.details[k]["why"] for k in self.fired) + ")"
        parts = [v["why"] for v in self.details.values()] + self.notes
        return head + "no retrain (" + "; ".join(parts) + ")"


def _feature_test(features: np.ndarray, names: Sequence[str], train: np.ndarray, cfg: DriftConfig,
                  report: DriftReport) -> None:
    table = feature_psi(features[train], features[-cfg.recent_sessions:], names)
    drifted = table.filter(pl.col("psi") > cfg.psi_threshold)
    share = drifted.height / max(table.height, 1)
    top = ", ".join(f"{r['feature']} {r['psi']:.2f}" for r in table.head(3).iter_rows(named=True))
    fired = share >= cfg.psi_feature_share
    report.details["feature_drift"] = {
        "fired": fired, "drifted": drifted.height, "features": table.height, "share": round(share, 3),
        "top": top, "why": f"feature PSI: {drifted.height}/{table.height} policy inputs above "
        f"{cfg.psi_threshold} (need share >= {cfg.psi_feature_share}; largest {top})"}
    if fired:
        report.fired.append("feature_drift")


def _regime_test(live: pl.DataFrame, train_start: date, train_end: date, cfg: DriftConfig,
                 report: DriftReport) -> None:
    dates = live["date"].unique().sort()
    recent_start = dates[max(dates.len() - cfg.recent_sessions, 0)]
    shift = state_shift(live.filter(pl.col("date").is_between(train_start, train_end)),
                        live.filter(pl.col("date") >= recent_start))
    shifted = shift.filter(pl.col("tv_distance") > cfg.hmm_tv_threshold)
    share = shifted.height / max(shift.height, 1)
    fired = shift.height > 0 and share >= cfg.hmm_sector_share
    top = ", ".join(f"{r['sector']} {r['tv_distance']:.2f}" for r in shift.head(3).iter_rows(named=True))
    report.details["regime_shift"] = {
        "fired": fired, "shifted": shifted.height, "sectors": shift.height, "share": round(share, 3), "top": top,
        "why": f"sector HMM state mix: {shifted.height}/{shift.height} sectors with TV distance above "
        f"{cfg.hmm_tv_threshold} (need share >= {cfg.hmm_sector_share}; largest {top})"}
    if fired:
        report.fired.append("regime_shift")


def _decay_test(log: pl.DataFrame, fold: str, cfg: DriftConfig, report: DriftReport) -> None:
    if log.height:
        log = log.filter(pl.col("fold") == fold).drop_nulls(["paper_return", "baseline_return"])
    if log.height < cfg.decay_sessions:
        report.notes.append(f"paper decay not tested ({log.height}/{cfg.decay_sessions} paper days of fold {fold})")
        return
    log = log.sort("decision_date").tail(cfg.decay_sessions)
    d = paper_decay(log["paper_return"].to_numpy(), log["baseline_return"].to_numpy())
    fired = d["excess_return"] < cfg.decay_min_excess
    report.details["paper_decay"] = {
        "fired": fired, **{k: round(v, 5) for k, v in d.items()},
        "why": f"paper track {d['paper_return']:+.2%} vs equal-weight {d['baseline_return']:+.2%} over "
        f"{d['days']} sessions (excess {d['excess_return']:+.2%}, fires below {cfg.decay_min_excess:+.2%})"}
    if fired:
        report.fired.append("paper_decay")


def evaluate_drift(fold: str, train_start: date, train_end: date, dates: np.ndarray, features: np.ndarray,
                   names: Sequence[str], live_states: pl.DataFrame, decisions: pl.DataFrame,
                   config: DriftConfig | None = None) -> DriftReport:
    """The three tests for deployed fold ``fold`` (trained on ``[train_start, train_end]``), at the close of
    the newest of ``dates``:

    * feature drift: PSI of each policy input (``features [T, F]`` named ``names``, the policy's own panel
      columns on ``dates``) over the last ``recent_sessions`` rows vs the training window;
    * regime shift: the sector-HMM state mix of ``live_states`` (``fold, sector, date, state``) recently vs
      over the training window (skipped, with a note, when the live states are not the fold's);
    * paper decay: the fold's last ``decay_sessions`` logged decisions (``decisions``: ``fold, decision_date,
      paper_return, baseline_return``) vs their equal-weight baseline.
    """
    cfg = config or DriftConfig()
    d = np.asarray(dates).astype("datetime64[D]")
    report = DriftReport(fold, d[-1].astype(object) if d.size else None)
    train = (d >= np.datetime64(train_start, "D")) & (d <= np.datetime64(train_end, "D"))
    _feature_test(np.asarray(features, dtype=np.float64), names, train, cfg, report)
    if live_states.is_empty() or fold not in set(live_states["fold"]):
        report.notes.append(f"HMM shift not tested (no live sector states from fold {fold})")
    else:
        _regime_test(live_states.filter(pl.col("fold") == fold), train_start, train_end, cfg, report)
    _decay_test(decisions, fold, cfg, report)
    return report
