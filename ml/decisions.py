"""Daily decisions: a trained policy applied at the close of each new session, with the circuit breaker,
producing replayable records and a paper track.

Timing. The decision dated t is taken at the close of t (VIX close of t included, see
``ml.envs.market_panel``) and names the weights to hold from the close of t into the next session. Its
observation is the policy's usual one: the panel's feature row t (clipped) and the weights held going
into the close of t (the previous decision's weights drifted with the returns since).

Paper track. The previous decision (close p) rebalanced from its held weights to its target, paying
``cost_rate`` × turnover, and then held through the sessions up to t; ``paper_return`` of row t is that
net return (compounded when sessions were skipped) and ``paper_equity`` compounds it from 1.0 at the first
decision. ``trailing_drawdown`` (fraction <= 0) is measured on paper equity over the breaker's window, and
feeds the breaker together with the VIX at t. ``baseline_return``: equal weight across the risky assets,
rebalanced daily, no costs, earned on t.

Replay. :func:`replay_decision` recomputes the target weights from a logged observation, VIX, drawdown
and breaker config; an auditor gets the logged weights back exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import torch

from ml.backtest.costs import drift_weights, rebalance
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import initial_weights
from ml.risk import CircuitBreakerConfig, apply_circuit_breaker, trailing_drawdown

__all__ = ["Decision", "PaperState", "decide_sessions", "policy_weights", "replay_decision"]


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
    names = policy.env_config.obs_names(panel)
    if policy.obs_names and names != policy.obs_names:
        raise ValueError(f"panel observation layout {names} does not match the policy's {policy.obs_names}")
    cfg = policy.env_config
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
            res = rebalance(target_prev, held_prev, panel.returns[prev_row + 1], cost_rate)
            growth, held = 1.0 + float(res.net), res.drifted
            for k in range(prev_row + 2, t + 1):  # sessions without a decision: hold and drift
                growth *= 1.0 + float(held[:-1] @ panel.returns[k])
                held = drift_weights(held, panel.returns[k])
            paper = growth - 1.0
            equity.append(equity[-1] * growth)
        equity = equity[-window:]
        dd = float(trailing_drawdown(np.array(equity), window)[-1])
        obs = cfg.observation(feats[t], held).astype(np.float64)  # the env's dtype, stored losslessly
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
