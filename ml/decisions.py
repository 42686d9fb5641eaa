"""Daily decisions: a trained policy applied at the close of each new session, with the circuit breaker,
producing replayable records and a paper track.

Timing. The decision dated t is taken at the close of t (VIX close of t included, see
``ml.envs.market_panel``) and names the weights to hold from the close of t into the next session. Its
observation is the policy's usual one: the panel's feature row t (clipped) and the weights held going
into the close of t (the previous decision's weights drifted with the returns since).

Paper track. The previous decision (close p) rebalanced from its held weights to its target, paying
``cost_rate`` × turnover, filling per the policy's ``env_config.execution`` (``ml.costs``: at the close
of p, the open or the close of the next session), and then held through the sessions up to t;
``paper_return`` of row t is that net return (compounded when sessions were skipped) and ``paper_equity``
compounds it from 1.0 at the first decision. ``trailing_drawdown`` (fraction <= 0) is measured on paper
equity over the breaker's window, and feeds the breaker together with the VIX at t. ``baseline_return``:
equal weight across the risky assets, rebalanced daily, no costs, earned on t.

Replay. :func:`replay_decision` recomputes the target weights from a logged observation, VIX, drawdown
and breaker config; an auditor gets the logged weights back exactly.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import polars as pl
import torch

from ml.agents.rollout import check_compatible
from ml.costs import drift_weights, rebalance
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import initial_weights
from ml.risk import CircuitBreakerConfig, apply_circuit_breaker, trailing_drawdown

__all__ = ["Decision", "PaperState", "Provenance", "decide_sessions", "decision_frame", "paper_state",
           "policy_weights", "replay_decision", "rows_to_decide"]


@dataclass(frozen=True)
class PaperState:
    """What one decision hands to the next (rebuilt from the last logged rows)."""

    last_date: date | None = None
    held: np.ndarray | None = None  # weights held going into the close of last_date, [A+1]
    target: np.ndarray | None = None  # weights chosen at that close, [A+1]
    equity: tuple[float, ...] = ()  # paper equity at recent decision closes, oldest first


@dataclass(frozen=True)
class Decision:
    """One decision (see the module docstring for the timing of each field)."""

    date: date
    observation: np.ndarray  # float64 copy of exactly what the policy saw
    obs_names: list[str]
    held_weights: np.ndarray
    policy_weights: np.ndarray
    target_weights: np.ndarray
    vix: float
    trailing_drawdown: float
    breaker_active: bool
    breaker_reason: str
    paper_return: float | None
    baseline_return: float | None
    paper_equity: float
    turnover: float
    extras: dict = field(default_factory=dict)


def policy_weights(policy, observation: np.ndarray) -> np.ndarray:
    """Deterministic weights ``softmax(mean logits)`` (float64, cash last) for one raw observation."""
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(observation, dtype=np.float64))[None]
        logits = policy.mean_logits(x).to(torch.float64)
        return torch.softmax(logits, dim=-1)[0].numpy().astype(np.float64)


def _apply_breaker(weights: np.ndarray, assets: Sequence[str], vix: float, drawdown: float,
                   breaker: CircuitBreakerConfig | None) -> tuple[np.ndarray, bool, str]:
    if breaker is None:
        return weights, False, ""
    out = apply_circuit_breaker(weights, assets, vix, drawdown, breaker)
    return out.weights, bool(out.active), out.reason(vix, drawdown, breaker)


def replay_decision(policy, observation: Sequence[float], assets: Sequence[str], vix: float, drawdown: float,
                    breaker: CircuitBreakerConfig | None) -> tuple[np.ndarray, np.ndarray]:
    """``(policy_weights, target_weights)`` recomputed from a logged decision's inputs."""
    w = policy_weights(policy, np.asarray(observation, dtype=np.float64))
    return w, _apply_breaker(w, assets, vix, drawdown, breaker)[0]


def decide_sessions(
    policy,
    panel: MarketPanel,
    rows: Sequence[int],
    state: PaperState,
    cost_rate: float,
    breaker: CircuitBreakerConfig | None,
) -> tuple[list[Decision], PaperState]:
    """Decisions at panel ``rows`` (increasing, all after ``state.last_date``), in order, each one
    seeing the holdings the previous one left. Returns the decisions and the state after the last."""
    names = check_compatible(policy, panel)
    cfg = policy.env_config
    gaps = panel.gaps_for(cfg.execution)
    feats = cfg.obs_features(panel)
    window = (breaker or CircuitBreakerConfig()).drawdown_window  # the paper track's drawdown, breaker on or off
    equity = list(state.equity)
    held_prev, target_prev, last = state.held, state.target, state.last_date
    prev_row = None if last is None else int(np.searchsorted(panel.dates, np.datetime64(last, "D")))
    out: list[Decision] = []
    for t in rows:
        t = int(t)
        if last is not None and panel.date_of(t) <= last:
            raise ValueError(f"decision row {t} ({panel.date_of(t)}) is not after the last decision {last}")
        baseline = float(panel.returns[t].mean()) if t > 0 else None
        if target_prev is None:  # the first decision of the track starts from the env's initial weights
            held = initial_weights(panel.n_assets, cfg.initial_weights).astype(np.float64)
            paper, equity = None, [1.0]
        else:
            if prev_row is None or prev_row >= t or panel.date_of(prev_row) != last:
                raise ValueError(f"the previous decision date {last} is not a panel row before {panel.date_of(t)}")
            res = rebalance(target_prev, held_prev, panel.returns[prev_row + 1], cost_rate,
                            execution=cfg.execution, gap_returns=None if gaps is None else gaps[prev_row + 1])
            growth, held = 1.0 + float(res.net), res.drifted
            for k in range(prev_row + 2, t + 1):  # sessions without a decision: hold and drift
                growth *= 1.0 + float(held[:-1] @ panel.returns[k])
                held = drift_weights(held, panel.returns[k])
            paper = growth - 1.0
            equity.append(equity[-1] * growth)
        equity = equity[-window:]
        dd = trailing_drawdown(np.array(equity), window)
        seen = target_prev if cfg.observed_weights == "target" and target_prev is not None else held
        obs = cfg.observe(feats[t], seen).astype(np.float64)  # the env's dtype, stored losslessly
        w_policy = policy_weights(policy, obs)
        vix = float(panel.vix[t])
        target, active, reason = _apply_breaker(w_policy, panel.assets, vix, dd, breaker)
        out.append(Decision(
            date=panel.date_of(t), observation=obs, obs_names=names, held_weights=np.asarray(held, dtype=np.float64),
            policy_weights=w_policy, target_weights=target, vix=vix, trailing_drawdown=dd,
            breaker_active=active, breaker_reason=reason, paper_return=paper, baseline_return=baseline,
            paper_equity=equity[-1], turnover=float(np.abs(target - held).sum()),
        ))
        held_prev, target_prev, last, prev_row = np.asarray(held, dtype=np.float64), target, panel.date_of(t), t
    return out, PaperState(last, held_prev, target_prev, tuple(equity))


def paper_state(log: pl.DataFrame) -> PaperState:
    """The state the logged decisions (``decisions.daily`` rows, oldest first; the last ``window`` suffice)
    hand to the next decision."""
    if log.is_empty():
        return PaperState()
    last = log.row(log.height - 1, named=True)
    return PaperState(last["decision_date"], np.asarray(last["held_weights"], dtype=np.float64),
                      np.asarray(last["target_weights"], dtype=np.float64), tuple(log["paper_equity"].to_list()))


def rows_to_decide(dates: np.ndarray, last: date | None, first_date: date | None,
                   train_end: date) -> tuple[list[int], list[int]]:
    """``(rows to decide, rows skipped)`` of a panel with ``dates``: every session after the last logged
    decision (an empty log: the newest session, or the sessions from ``first_date``), never one inside the
    deployed policy's training window (``<= train_end``: skipped, the paper track holds through them)."""
    d = np.asarray(dates).astype("datetime64[D]")
    if last is not None:
        rows = np.nonzero(d > np.datetime64(last, "D"))[0]
    elif first_date is None:
        rows = np.array([d.size - 1])
    else:
        if first_date <= train_end:
            raise ValueError(f"first_date {first_date} is inside the deployed policy's training window (ends "
                             f"{train_end}): a policy never decides on days it was trained on")
        rows = np.nonzero(d >= np.datetime64(first_date, "D"))[0]
    inside = d[rows] <= np.datetime64(train_end, "D")
    return [int(i) for i in rows[~inside]], [int(i) for i in rows[inside]]


@dataclass(frozen=True)
class Provenance:
    """Who decided, with what: stored on every decision row so an auditor can replay it."""

    run_id: str
    source: str
    code_version: str
    fold: str
    policy_kind: str
    checkpoint_path: str  # relative to the artifact root
    checkpoint_sha256: str
    policy_data_hash: str
    decided_at: datetime


def _sector_context(states: pl.DataFrame, days: list[date]) -> tuple[str | None, dict, dict]:
    """``(fold, {date: {sector: state}}, {date: {sector: {p_*: prob}}})`` from live sector-HMM rows."""
    rows = states.filter(pl.col("date").is_in(days)) if states.height else states
    if rows.is_empty():
        return None, {}, {}
    pcols = [c for c in rows.columns if c.startswith("p_")]
    st: dict = {}
    pr: dict = {}
    for r in rows.sort("date", "sector").iter_rows(named=True):
        st.setdefault(r["date"], {})[r["sector"]] = r["state"]
        pr.setdefault(r["date"], {})[r["sector"]] = {c: (round(r[c], 6) if r[c] is not None else None) for c in pcols}
    return rows["fold"][0], st, pr


def _prescreen_context(scores: pl.DataFrame | None) -> dict:
    out: dict = {}
    for r in (scores.iter_rows(named=True) if scores is not None else ()):
        out.setdefault(r["date"], {})[r["ticker"]] = {
            "regime": r["regime"], "buy_probability": r["buy_probability"], "sell_probability": r["sell_probability"]}
    return out


#: Columns of ``decisions.daily`` (see warehouse/schema.sql for what each holds).
DECISION_SCHEMA: dict[str, pl.DataType] = {
    "decision_date": pl.Date, "decided_at": pl.Datetime("us"), "run_id": pl.Utf8, "catch_up": pl.Boolean,
    "source": pl.Utf8, "code_version": pl.Utf8, "fold": pl.Utf8, "policy_kind": pl.Utf8, "checkpoint_path": pl.Utf8,
    "checkpoint_sha256": pl.Utf8, "policy_data_hash": pl.Utf8, "assets": pl.List(pl.Utf8),
    "obs_names": pl.List(pl.Utf8), "observation": pl.List(pl.Float64), "held_weights": pl.List(pl.Float64),
    "policy_weights": pl.List(pl.Float64), "target_weights": pl.List(pl.Float64), "turnover": pl.Float64,
    "vix": pl.Float64, "vix_band": pl.Utf8, "vix_bucket": pl.Utf8, "hmm_fold": pl.Utf8, "sector_states": pl.Utf8,
    "sector_probabilities": pl.Utf8, "prescreen_fold": pl.Utf8, "prescreen_scores": pl.Utf8,
    "breaker_enabled": pl.Boolean, "breaker_active": pl.Boolean, "breaker_reason": pl.Utf8,
    "breaker_config": pl.Utf8, "trailing_drawdown": pl.Float64, "paper_return": pl.Float64,
    "baseline_return": pl.Float64, "paper_equity": pl.Float64, "inputs_as_of": pl.Utf8,
    "stale_inputs": pl.List(pl.Utf8),
}


def decision_frame(decisions: Sequence[Decision], provenance: Provenance, assets: Sequence[str], newest: date,
                   breaker: CircuitBreakerConfig | None, vix_regimes: pl.DataFrame, sector_states: pl.DataFrame,
                   prescreen_scores: pl.DataFrame | None, *, inputs_as_of: dict[str, str] | None = None,
                   stale_inputs: Sequence[str] = ()) -> pl.DataFrame:
    """The ``decisions.daily`` rows of ``decisions``: the decision itself, everything needed to replay it,
    and its context - VIX band/bucket (``vix_regimes``: date, band, bucket), the live sector-HMM states and
    probabilities (``sector_states``), the deployed fold's prescreen scores of the assets (context only
    unless the policy observes them). ``newest``: the newest session in the data (older rows are catch-up).
    ``inputs_as_of``: each input's newest row at decision time (``ml.freshness``); ``stale_inputs``: those behind
    the reference calendar then."""
    days = [d.date for d in decisions]
    vix_ctx = {r["date"]: r for r in vix_regimes.filter(pl.col("date").is_in(days)).iter_rows(named=True)}
    hmm_fold, states, probs = _sector_context(sector_states, days)
    scores = _prescreen_context(prescreen_scores)
    breaker_json = json.dumps((breaker or CircuitBreakerConfig()).model_dump(mode="json"))
    p = provenance
    return pl.DataFrame([{
        "decision_date": d.date, "decided_at": p.decided_at, "run_id": p.run_id, "catch_up": d.date < newest,
        "source": p.source, "code_version": p.code_version, "fold": p.fold, "policy_kind": p.policy_kind,
        "checkpoint_path": p.checkpoint_path, "checkpoint_sha256": p.checkpoint_sha256,
        "policy_data_hash": p.policy_data_hash, "assets": [*assets, "cash"], "obs_names": d.obs_names,
        "observation": d.observation.tolist(), "held_weights": d.held_weights.tolist(),
        "policy_weights": d.policy_weights.tolist(), "target_weights": d.target_weights.tolist(),
        "turnover": d.turnover, "vix": d.vix, "vix_band": vix_ctx.get(d.date, {}).get("band"),
        "vix_bucket": vix_ctx.get(d.date, {}).get("bucket"), "hmm_fold": hmm_fold,
        "sector_states": json.dumps(states[d.date]) if d.date in states else None,
        "sector_probabilities": json.dumps(probs[d.date]) if d.date in probs else None,
        "prescreen_fold": p.fold if scores else None,
        "prescreen_scores": json.dumps(scores[d.date]) if d.date in scores else None,
        "breaker_enabled": breaker is not None, "breaker_active": d.breaker_active,
        "breaker_reason": d.breaker_reason, "breaker_config": breaker_json,
        "trailing_drawdown": d.trailing_drawdown, "paper_return": d.paper_return,
        "baseline_return": d.baseline_return, "paper_equity": d.paper_equity,
        "inputs_as_of": json.dumps(inputs_as_of, sort_keys=True) if inputs_as_of is not None else None,
        "stale_inputs": list(stale_inputs),
    } for d in decisions], schema=DECISION_SCHEMA)
