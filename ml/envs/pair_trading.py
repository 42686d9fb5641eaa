"""Batched pair-trading environment: ``E`` episodes on (pair, date) windows stepped at once as Torch tensors
(CPU or CUDA), no per-environment Python loop, synchronous auto-reset.

Inputs (precomputed elsewhere) for ``P`` pairs over ``T`` trading dates:

* ``states [T, P, F]``: market-state columns known at the close of date t (NaN where not available yet);
* ``spread_returns [T, P]``: simple return of day t (close t-1 -> close t) of a gross-1 *long spread*
  position (leg A weight ``1/(1+|b|)``, leg B weight ``-b/(1+|b|)``); NaN where unavailable;
* optional ``hedge_ratios`` (``b``, ``[T, P]`` or ``[P]``): only used for the borrow charge (``None``: b = 1).

Row ``(t, p)`` is *usable* iff ``states[t, p]`` is all finite, ``spread_returns[t+1, p]`` is finite (and
``hedge_ratios[t, p]`` when given). Each reset draws, per env, a (pair, start) uniformly among the
(p, t0) whose rows ``t0 .. t0 + episode_len - 1`` are all usable (:class:`ValueError` if there is none).

Timing: the observation is built at the close of t; the action sets the position held over day t+1, which
earns ``spread_returns[t+1]``. Actions (int): 0 = flat, 1 = long spread, 2 = short spread (:data:`POSITIONS`).

Reward for the decision at close t (``pos`` in {-1, 0, +1}, times ``reward_scale``; 100 = percent units)::

    pos_new * spread_returns[t+1] - cost_rate * |pos_new - pos_old| - borrow_rate / 252 * short_gross(pos_new)

* cost: a gross-1 spread trades gross 1 of equity across its two legs per unit of ``|dpos|``, so a one-way
  slippage + commission rate per unit traded (6e-4 = 5 bps + 1 bp) is charged once per unit of ``|dpos|``
  (open or close: 1x, flip long <-> short: 2x);
* borrow: charged every day a position is held, on the gross of its short leg(s): with leg weights
  ``wA = pos/(1+|b|)``, ``wB = -pos*b/(1+|b|)``, ``short_gross = max(-wA, 0) + max(-wB, 0)``
  (b > 0: long spread shorts B, ``b/(1+|b|)``; short spread shorts A, ``1/(1+|b|)``; b = 1: 0.5 either way).

Observation (``F + 2`` float32): the state row standardised by a frozen per-column mean / std (fitted on
all usable rows given to the env unless ``obs_stats`` is passed; exposed as ``obs_mean`` / ``obs_std``),
clipped to ``+-obs_clip``, NaN -> 0; then the position held going into the decision and
``min(days_held, episode_len) / episode_len``, ``days_held`` = sessions the current (non-flat) position has
been held (0 when flat, 1 on the first day after opening or flipping). :func:`pair_observation` builds the
same vector for arbitrary rows (the book at inference).

Episodes: ``episode_len`` decisions from flat. The end is a *time-limit truncation*, not a terminal state
(the book trades on): ``truncated`` is True, ``terminated`` is always False, and ``info["final_obs"]``
holds the observation the episode ended on so learners bootstrap through it. All envs start together, so
they truncate together; the returned observation is then already the next episode's first one.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["POSITIONS", "BatchedPairEnv", "PairEnvConfig", "fit_state_stats", "normalize_states",
           "pair_observation", "usable_rows"]

POSITIONS: tuple[float, float, float] = (0.0, 1.0, -1.0)  # action -> target position (flat, long, short)
TRADING_DAYS = 252


class PairEnvConfig(BaseModel):
    """Episode length (sessions), costs (fractions of equity) and scales; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_len: int = Field(default=63, ge=1, description="decisions per episode (sessions)")
    cost_rate: float = Field(default=6e-4, ge=0.0, description="cost per unit of |position change| "
                             "(5 bps slippage + 1 bp commission)")
    borrow_rate: float = Field(default=0.005, ge=0.0, description="annual borrow fee on the short-leg gross, "
                               "charged daily /252")
    reward_scale: float = Field(default=100.0, gt=0.0, description="rewards x this (100: percent units)")
    obs_clip: float = Field(default=5.0, gt=0.0, description="standardised states are clipped to +-this")


def _as_f64(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.from_numpy(np.array(x, dtype=np.float64))  # a copy: inputs may be read-only views


def usable_rows(states: Any, spread_returns: Any, hedge_ratios: Any = None) -> torch.Tensor:
    """``[T, P]`` bool: all states of (t, p) finite and ``spread_returns[t+1, p]`` finite (and b finite)."""
    s, r = _as_f64(states), _as_f64(spread_returns)
    ok = torch.isfinite(s).all(-1)
    nxt = torch.zeros_like(ok)
    nxt[:-1] = torch.isfinite(r[1:])
    ok = ok & nxt
    if hedge_ratios is not None:
        ok = ok & torch.isfinite(_as_f64(hedge_ratios)).expand_as(ok)
    return ok


def fit_state_stats(states: Any, usable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column ``(mean, std)`` (float64 ``[F]``) over the usable rows; a std of 0 (or no rows) becomes 1."""
    rows = _as_f64(states)[usable]
    if rows.shape[0] == 0:
        f = _as_f64(states).shape[-1]
        return torch.zeros(f, dtype=torch.float64), torch.ones(f, dtype=torch.float64)
    mean, std = rows.mean(0), rows.std(0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def normalize_states(states: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, clip: float) -> torch.Tensor:
    """``clip((x - mean) / std, -clip, clip)`` with NaN -> 0, float32, on ``states``' device."""
    x = states.to(torch.float32)
    z = (x - mean.to(x.device, torch.float32)) / std.to(x.device, torch.float32)
    return torch.nan_to_num(z, nan=0.0).clamp(-clip, clip)


def pair_observation(states_rows: Any, position: Any, days_held: Any, mean: torch.Tensor, std: torch.Tensor,
                     config: PairEnvConfig) -> torch.Tensor:
    """The env's observation ``[B, F + 2]`` (float32) for raw state rows ``[B, F]``, the position held
    going into the decision ``[B]`` (-1 / 0 / +1) and ``days_held`` ``[B]`` (sessions it has been held)."""
    s = states_rows if isinstance(states_rows, torch.Tensor) else torch.as_tensor(np.asarray(states_rows, np.float64))
    dev = s.device
    pos = torch.as_tensor(position, dtype=torch.float32, device=dev).reshape(-1)
    days = torch.as_tensor(days_held, dtype=torch.float32, device=dev).reshape(-1)
    held = days.clamp(0, config.episode_len) / config.episode_len
    return torch.cat([normalize_states(s.reshape(-1, s.shape[-1]), mean, std, config.obs_clip),
                      pos[:, None], held[:, None]], dim=1)


class BatchedPairEnv:
    """``num_envs`` pair-trading episodes stepped together (see the module docstring for the semantics).

    ``reset() -> obs [E, F+2]``; ``step(actions [E] int) -> (obs, reward, terminated, truncated, info)`` with
    ``reward [E]`` (scaled), ``terminated`` always False, ``truncated`` True at the episode end (auto-reset:
    ``obs`` is then the new episode's first observation and ``info["final_obs"]`` the finished one's last),
    ``info`` also holds ``final_obs`` (the observation after this step before any reset: the bootstrap state),
    ``position`` (held after the step), ``pair``, ``date`` (the decision's row t),
    ``spread_return`` (raw, day t+1), ``cost`` and ``borrow`` (unscaled fractions). Reproducible: one
    ``torch.Generator`` (seeded ``seed``) draws only the episode starts, so the same seed gives the same
    episodes whatever the actions."""

    n_actions = 3

    def __init__(self, states: Any, spread_returns: Any, config: PairEnvConfig | None = None, num_envs: int = 32,
                 device: str | torch.device = "cpu", seed: int = 0, *, hedge_ratios: Any = None,
                 obs_stats: tuple[Any, Any] | None = None):
        self.config = cfg = config or PairEnvConfig()
        self.device = torch.device(device)
        self.num_envs = int(num_envs)
        s64, r64 = _as_f64(states), _as_f64(spread_returns)
        if s64.ndim != 3 or r64.shape != s64.shape[:2]:
            raise ValueError(f"states must be [T, P, F] and spread_returns [T, P]; got {tuple(s64.shape)} and "
                             f"{tuple(r64.shape)}")
        self.num_dates, self.num_pairs, self.num_features = (int(n) for n in s64.shape)
        self.obs_dim = self.num_features + 2
        self.usable = usable_rows(s64, r64, hedge_ratios)  # [T, P] bool, CPU
        L, T, P = cfg.episode_len, self.num_dates, self.num_pairs
        # starts: (t0, p) whose L rows are all usable; flat index t0 * P + p
        c = torch.zeros(T + 1, P, dtype=torch.int64)
        c[1:] = self.usable.to(torch.int64).cumsum(0)
        full = torch.zeros(T, P, dtype=torch.bool)
        if L <= T:
            full[: T - L + 1] = (c[L:] - c[: T - L + 1]) == L
        starts = torch.nonzero(full.reshape(-1)).reshape(-1)
        if starts.numel() == 0:
            raise ValueError(f"no (pair, start) has {L} consecutive usable rows (finite states and next-day spread "
                             f"returns) among {T} dates x {P} pairs ({int(self.usable.sum())} usable rows); "
                             "pass more dates or a shorter episode_len")
        self.starts = starts.to(self.device)
        if obs_stats is None:
            self.obs_mean, self.obs_std = fit_state_stats(s64, self.usable)
        else:
            self.obs_mean, self.obs_std = (_as_f64(x).reshape(-1) for x in obs_stats)
        dev = self.device
        self._feat = normalize_states(s64.reshape(T * P, -1), self.obs_mean, self.obs_std, cfg.obs_clip).to(dev)
        ret = torch.zeros(T, P, dtype=torch.float64)
        ret[:-1] = torch.nan_to_num(r64[1:], nan=0.0)  # row t holds the return earned by the decision at t
        self._ret = ret.reshape(-1).to(dev, torch.float32)
        b = torch.ones(T, P, dtype=torch.float64) if hedge_ratios is None else \
            torch.nan_to_num(_as_f64(hedge_ratios), nan=1.0).expand(T, P)
        denom = 1.0 + b.abs()
        self._short_long = (b.clamp(min=0) / denom).reshape(-1).to(dev, torch.float32)   # short gross, pos = +1
        self._short_short = ((1.0 + (-b).clamp(min=0)) / denom).reshape(-1).to(dev, torch.float32)  # pos = -1
        self._pos_of = torch.tensor(POSITIONS, dtype=torch.float32, device=dev)
        self._gen = torch.Generator(device=dev)
        self._gen.manual_seed(int(seed))
        E = self.num_envs
        self.pair = torch.zeros(E, dtype=torch.int64, device=dev)
        self.t = torch.zeros(E, dtype=torch.int64, device=dev)
        self.position = torch.zeros(E, dtype=torch.float32, device=dev)
        self.days_held = torch.zeros(E, dtype=torch.float32, device=dev)
        self.k = 0  # decisions taken in the current episodes (all envs are in step)

    def _obs(self) -> torch.Tensor:
        L = self.config.episode_len
        feat = self._feat[self.t * self.num_pairs + self.pair]
        return torch.cat([feat, self.position[:, None], (self.days_held.clamp(max=L) / L)[:, None]], dim=1)

    def reset(self, pairs: Any = None, starts: Any = None) -> torch.Tensor:
        """Start new episodes (flat, days_held 0): random usable (pair, start) draws, or the given ``pairs``
        / ``starts`` ``[E]`` (not checked for usability; for tests and hand evaluation). Returns ``obs``."""
        if pairs is None or starts is None:
            idx = self.starts[torch.randint(0, self.starts.numel(), (self.num_envs,), generator=self._gen,
                                            device=self.device)]
            self.t, self.pair = idx // self.num_pairs, idx % self.num_pairs
        else:
            self.pair = torch.as_tensor(pairs, dtype=torch.int64, device=self.device).reshape(self.num_envs)
            self.t = torch.as_tensor(starts, dtype=torch.int64, device=self.device).reshape(self.num_envs)
        self.position = torch.zeros_like(self.position)
        self.days_held = torch.zeros_like(self.days_held)
        self.k = 0
        return self._obs()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        cfg = self.config
        a = torch.as_tensor(actions, device=self.device).to(torch.int64)
        new = self._pos_of[a]
        row = self.t * self.num_pairs + self.pair
        r_next = self._ret[row]
        cost = cfg.cost_rate * (new - self.position).abs()
        short = torch.where(new > 0, new * self._short_long[row], -new * self._short_short[row])
        borrow = cfg.borrow_rate / TRADING_DAYS * short
        reward = (new * r_next - cost - borrow) * cfg.reward_scale
        same = (new == self.position) & (new != 0)
        self.days_held = torch.where(new == 0, torch.zeros_like(new), torch.where(same, self.days_held + 1, 1.0))
        info = {"position": new, "pair": self.pair, "date": self.t, "spread_return": r_next, "cost": cost,
                "borrow": borrow}
        self.position = new
        self.t = self.t + 1
        self.k += 1
        done = self.k >= cfg.episode_len
        truncated = torch.full((self.num_envs,), done, dtype=torch.bool, device=self.device)
        terminated = torch.zeros_like(truncated)
        obs = info["final_obs"] = self._obs()
        if done:
            obs = self.reset()
        return obs, reward, terminated, truncated, info
