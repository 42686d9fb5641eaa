"""Ensembles of allocation policies: the composite-weighted PPO + SAC + TD3 ensemble of the seed design, and
seed ensembles (N seeds of one learner, equal weights).

Composite score of a member (the reference formula, measured on the fold's validation slice, never the test
window): ``composite = (R_member - R_SPY) * min(Sortino, 3)`` with ``R`` the compounded net return over the
slice and Sortino annualised (rf 0). One guard: the Sortino is floored at 0 - under the literal formula a
member that trails SPY (negative excess) with a negative Sortino would score *positive*; floored, every
member that trails SPY, or whose mean daily return is <= 0, scores <= 0. Ensemble weight ``∝ max(composite,
0)``; when no member scores above 0 the weights fall back to equal (:func:`composite_weights` says so).
Caveat: each member's checkpoint was itself chosen on the same slice (best validation Sharpe of ~8-10
evaluations), so the composites are optimistic, not out-of-sample estimates.

The ensemble's daily weights are the weighted average of its members' weights,
``w_t = sum_k c_k softmax(logits_k(s_t))``; as a policy it returns the logits ``log w_t`` (softmax-exact), so
the environment, the evaluation, the daily decision and the audit treat it like any single policy. Every
member sees the same observation (same ``EnvConfig`` and observation layout; each normalises it itself).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ml import metrics
from ml.agents.rollout import evaluate_policy

__all__ = ["CompositeEnsemble", "CompositeScore", "EnsemblePolicy", "composite_ensemble", "composite_score",
           "composite_weights"]

SORTINO_CAP = 3.0


@dataclass(frozen=True)
class CompositeScore:
    """A member's validation numbers: compounded return, SPY's over the same days, Sortino, composite."""

    val_return: float
    spy_return: float
    sortino: float
    composite: float

    @property
    def excess(self) -> float:
        return self.val_return - self.spy_return


def composite_score(net_returns: np.ndarray, spy_returns: np.ndarray) -> CompositeScore:
    """``(R - R_SPY) * min(max(Sortino, 0), 3)`` over the same days (simple daily returns, fractions).
    A NaN Sortino (no downside day) counts as the cap."""
    r, spy = np.asarray(net_returns, dtype=float), np.asarray(spy_returns, dtype=float)
    if r.shape != spy.shape:
        raise ValueError(f"member and SPY returns differ in length ({r.size} vs {spy.size})")
    val, ref = metrics.total_return(r), metrics.total_return(spy)
    s = metrics.sortino(r)
    capped = SORTINO_CAP if np.isnan(s) else min(max(s, 0.0), SORTINO_CAP)
    return CompositeScore(val, ref, float(s), float((val - ref) * capped))


def composite_weights(composites: Mapping[str, float]) -> tuple[dict[str, float], bool]:
    """``({member: weight}, fell_back)``: weights ``∝ max(composite, 0)`` (NaN counts as 0), or equal weights
    (``fell_back=True``) when no composite is above 0."""
    if not composites:
        raise ValueError("an ensemble needs at least one member")
    pos = {k: (max(float(v), 0.0) if np.isfinite(v) else 0.0) for k, v in composites.items()}
    total = sum(pos.values())
    if total <= 0.0:
        return {k: 1.0 / len(pos) for k in pos}, True
    return {k: v / total for k, v in pos.items()}, False


class EnsemblePolicy(nn.Module):
    """Weighted average of member policies' weights (members: PPO / SAC / TD3 policies or ensembles).

    ``names``: one label per member (``"ppo"``, ``"sac"``, ``"td3"``, or ``"seed0"``...); ``weights``: the
    mixing weights (>= 0, normalised to sum 1). Metadata comes from the first member (all must share the
    environment config, the observation layout and the assets); ``data_hash`` / ``train_window`` are the
    first member's (members of one fold train on the same window)."""

    kind = "ensemble"

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float], names: Sequence[str]):
        super().__init__()
        if not members or len(members) != len(weights) or len(members) != len(names):
            raise ValueError("an ensemble needs members, weights and names of the same non-zero length")
        first = members[0]
        for m in members[1:]:
            if m.env_config != first.env_config or list(m.obs_names) != list(first.obs_names) or \
                    tuple(m.assets) != tuple(first.assets):
                raise ValueError("ensemble members must share the environment config, observation layout and assets")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"ensemble weights must be finite, >= 0 and not all 0, got {list(weights)}")
        self.members = nn.ModuleList(members)
        self.register_buffer("mix", torch.as_tensor(w / w.sum(), dtype=torch.float64))
        self.names = [str(n) for n in names]
        self.env_config, self.obs_names, self.assets = first.env_config, list(first.obs_names), tuple(first.assets)
        self.obs_dim, self.n_actions = int(first.obs_dim), int(first.n_actions)
        self.data_hash, self.train_window = first.data_hash, tuple(first.train_window)

    @property
    def seed(self) -> int:
        return int(self.members[0].seed)

    @property
    def member_weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.mix.tolist()))

    def _mixed(self, logits: list[torch.Tensor], dim: int) -> torch.Tensor:
        w = sum(c * torch.softmax(z.to(torch.float64), dim=dim) for c, z in zip(self.mix, logits))
        return torch.log(torch.clamp_min(w, 1e-300))

    def act_t(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits ``log(sum_k c_k softmax(member_k))`` assets-first ``[A+1, E]`` (float64)."""
        return self._mixed([m.act_t(obs) for m in self.members], 0)

    def mean_logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self._mixed([m.mean_logits(obs) for m in self.members], -1)

    @torch.no_grad()
    def weights(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mean_logits(obs), dim=-1)


@dataclass(frozen=True)
class CompositeEnsemble:
    """What :func:`composite_ensemble` returns: the ensemble policy, each member's :class:`CompositeScore`
    (empty without a validation window), the weights and whether they fell back to equal."""

    policy: EnsemblePolicy
    scores: dict[str, CompositeScore]
    weights: dict[str, float]
    fell_back: bool

    def table_rows(self) -> list[dict]:
        """One dict per member: ``member, val_return, spy_val_return, excess, sortino, composite, weight,
        fallback_equal`` (the score columns are None without a validation window)."""
        out = []
        for k, w in self.weights.items():
            s = self.scores.get(k)
            out.append({"member": k, "val_return": s and s.val_return, "spy_val_return": s and s.spy_return,
                        "excess": s and s.excess, "sortino": s and s.sortino, "composite": s and s.composite,
                        "weight": w, "fallback_equal": self.fell_back})
        return out


def composite_ensemble(members: Mapping[str, nn.Module], panel, window: tuple[int, int] | None,
                       benchmark: str = "SPY") -> CompositeEnsemble:
    """Score every member on the validation panel rows ``window`` (deterministic rollouts, the members'
    own execution and costs) against ``benchmark`` buy-and-hold over the same earned days, and weigh them
    by :func:`composite_weights`. ``window=None``: equal weights (``fell_back=True``)."""
    hashes = {getattr(m, "data_hash", "") for m in members.values()}
    if len(hashes) > 1:
        raise ValueError(f"ensemble members were trained on different data (data hashes {sorted(hashes)}): "
                         "re-run every member for this fold with the same settings")
    scores: dict[str, CompositeScore] = {}
    if window is not None:
        first = str(panel.dates[window[0] + 1])
        late = {k: m.train_window[1] for k, m in members.items() if m.train_window[1] and m.train_window[1] >= first}
        if late:
            raise ValueError(f"members {late} trained on days of the validation slice (from {first}): their "
                             "composite would be in-sample; re-run them with the validation slice on")
    if window is None:
        weights, fell_back = {k: 1.0 / len(members) for k in members}, True
    else:
        if benchmark not in panel.assets:
            raise ValueError(f"the composite score needs {benchmark} among the panel's assets {panel.assets}")
        lo, hi = window
        ref = panel.returns[lo + 1 : hi + 1, panel.assets.index(benchmark)]
        scores = {k: composite_score(evaluate_policy(m, panel, lo, hi).net_returns, ref) for k, m in members.items()}
        weights, fell_back = composite_weights({k: s.composite for k, s in scores.items()})
    policy = EnsemblePolicy(list(members.values()), [weights[k] for k in members], list(members))
    return CompositeEnsemble(policy, scores, weights, fell_back)
