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
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["feature_psi", "paper_decay", "psi", "state_shift"]

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
