"""Daily long-only allocation environment over a :class:`~ml.envs.market_panel.MarketPanel`, two faces.

One set of semantics, written once in the array-agnostic helpers of this module (and
:func:`ml.costs.rebalance`), used by both faces:

* :class:`PortfolioEnv` - a ``gymnasium.Env`` (NumPy, one environment, float64 arithmetic);
* :class:`BatchedPortfolioEnv` - ``E`` environments stepped at once as Torch tensors on a device (CPU or
  CUDA), no per-environment Python loop, vectorised auto-reset; used for PPO training and evaluation.

Timing (project convention): the observation for row t is built at the close of t from data <= close t;
the action chosen on it sets the target weights, which earn day t+1 (``returns[t+1]``) from the moment the
order fills (``EnvConfig.execution``: the open of t+1 by default; the close of t; the close of t+1).

Observation at row t (``float32`` by default; clipped to ``[-clip_obs, clip_obs]`` when ``clip_obs`` is set):
the panel's feature row t - the dataset columns named by ``EnvConfig.observation`` (an
:class:`ml.dataset.ObservationSpec`; default ``[A x (ret_5d, ret_21d, rv_21d_ann)] + [vix_centered,
vix_chg_5d, vix_rel_21, vix_high_63]``) - then the weights held going into t (A assets then cash; with
``observed_weights="target"`` the previous decision's target instead, undrifted):
3A + 4 + (A + 1) = 21 numbers for 4 assets. The policy standardises them with train-window statistics.

Action: ``A + 1`` raw logits (unbounded reals); the target weights are ``softmax(logits)`` (cash last):
long-only, fully invested, always on the simplex.

Step (decision at close t): turnover, cost and net return via :func:`ml.costs.rebalance` under
``EnvConfig.execution`` (``"close"``: ``net = w_new . r_{t+1} - cost_rate * sum|w_new - w_old|``, cash earns
0; ``"next_open"``: the old weights earn the overnight gap, the trade fills at the open of t+1, the new
weights earn the session; ``"next_close"``: the trade fills at the close of t+1), then the weights drift
(``w_old`` for the next step), equity is multiplied by ``1 + net`` and the next observation is for row t+1.

Rewards (``EnvConfig.reward``), all per step, in units of daily return unless said otherwise:

* ``"vix_shaped"`` (default): ``net - vix_lambda * |net| * VIX_t / 20
  - vix_penalty * max(0, VIX_t - vix_threshold) / vix_threshold * equity_weight * 1e-3`` where ``VIX_t`` is
  the (lagged as in the panel) VIX close known at the decision and ``equity_weight`` the new weight of
  ``equity_assets`` (SPY + QQQ): scales losses *and* gains up when fear is high and charges holding
  equities into a VIX above 22.
* ``"vol_penalty"``: ``net - vol_lambda * sigma_t - vol_kappa * turnover`` with ``sigma_t`` the population
  std of this episode's last ``vol_window`` net returns including the current one (0 on the first step).
* ``"differential_sharpe"``: Moody & Saffell's differential Sharpe ratio (unitless, O(1)) with EMA rate
  ``dsr_eta``: ``D_t = (B dA - A dB / 2) / (B - A^2)^{3/2}``, ``dA = net - A``, ``dB = net^2 - B``, then
  ``A += eta dA``, ``B += eta dB``; starts from ``A = 0``, ``B = dsr_init_var`` (a prior daily variance).
* ``"net"``: the net return itself.

Episodes: each (re)set picks a start row uniformly in ``[start_idx, end_idx - 1]`` of the training window
(or the one given), starts from ``initial_weights`` (all cash by default, so the first step pays the entry
cost) and equity 1. It is *truncated* after ``episode_length`` steps or when it reaches ``end_idx`` (the
last row whose return may be earned), and *terminated* when equity falls below ``terminate_below`` (0.5)
of its start (``None`` disables).
"""
from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ml.costs import Execution, rebalance
from ml.data.universe import EQUITY_ASSETS
from ml.dataset import ObservationSpec
from ml.envs.market_panel import MarketPanel

__all__ = [
    "BatchedPortfolioEnv",
    "EnvConfig",
    "PortfolioEnv",
    "RewardKind",
    "differential_sharpe",
    "softmax_weights",
    "step_reward",
]

RewardKind = Literal["vix_shaped", "vol_penalty", "differential_sharpe", "net"]


class EnvConfig(BaseModel):
    """All environment knobs (see the module docstring for the formulas). Plain JSON-able values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cost_rate: float = Field(default=0.0005, ge=0.0, description="cost per unit turnover (5 bps)")
    execution: Execution = Field(default="next_open", description="when the order decided at the close of t fills: "
                                 "'close' (t), 'next_open' (open of t+1), 'next_close' (close of t+1); ml.costs")
    reward: RewardKind = "vix_shaped"
    vix_lambda: float = Field(default=0.05, ge=0.0)
    vix_penalty: float = Field(default=2.0, ge=0.0)
    vix_threshold: float = Field(default=22.0, gt=0.0, description="VIX level (index points) above which equity is charged")
    equity_assets: tuple[str, ...] = EQUITY_ASSETS
    vol_lambda: float = Field(default=0.05, ge=0.0)
    vol_window: int = Field(default=20, ge=2)
    vol_kappa: float = Field(default=0.0, ge=0.0, description="extra turnover penalty on top of the cost")
    dsr_eta: float = Field(default=0.01, gt=0.0, lt=1.0)
    dsr_init_var: float = Field(default=1e-4, gt=0.0, description="prior variance of daily net returns")
    episode_length: int = Field(default=1024, ge=1, description="steps (trading days) per episode")
    terminate_below: float | None = Field(default=0.5, gt=0.0, lt=1.0)
    initial_weights: Literal["cash", "equal"] = "cash"
    observed_weights: Literal["held", "target"] = Field(
        default="held", description="weights in the observation: held (drifted into the decision, default) or "
        "target (the previous decision's target, undrifted: the seed article)")
    episode_starts: Literal["random", "sequential"] = Field(
        default="random", description="random: every episode starts at a uniform training row; sequential: the "
        "next episode starts where the last one ended (env e's first at start + e * span / E), wrapping at the end")
    observation: ObservationSpec = Field(default_factory=ObservationSpec,
                                         description="the dataset columns the policy observes (ml.dataset)")
    clip_obs: float | None = Field(default=None, ge=1.0, description="clip raw observations to +-clip_obs "
                                   "(>= 1: weights are never clipped; None: no clip, the policy normaliser clips "
                                   "standardised values)")
    dtype: Literal["float32", "float64"] = "float32"

    def obs_dim(self, panel: MarketPanel) -> int:
        return len(self.obs_names(panel))

    def obs_names(self, panel: MarketPanel) -> list[str]:
        return [*panel.feature_names, *(f"w.{a}" for a in panel.assets), "w.cash"]

    def _clip(self, x: np.ndarray) -> np.ndarray:
        return x if self.clip_obs is None else np.clip(x, -self.clip_obs, self.clip_obs)

    def obs_features(self, panel: MarketPanel) -> np.ndarray:
        """The per-date part of every observation ``[T, F]``: the panel's feature columns (clipped if set)."""
        return self._clip(panel.features)

    def observe(self, features_row: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """One observation: a row of :meth:`obs_features` then the weights held (cash last), in ``dtype``."""
        return self._clip(np.concatenate([features_row, weights])).astype(self.dtype)


# ----------------------------------------------------------------------------------------------------
# Array-agnostic semantics (NumPy arrays or Torch tensors, any leading batch shape)
# ----------------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def softmax_weights(logits: Any) -> Any:
    """Numerically stable ``softmax`` over the last axis: logits ``[..., A+1]`` -> weights on the simplex.

    Finite logits of any magnitude (e.g. +-1e3) give finite weights >= 0 summing to 1.
    """
    if _is_torch(logits):
        return torch.softmax(logits, dim=-1)
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1)[..., None]


def _relu(x: Any) -> Any:
    return torch.clamp_min(x, 0.0) if _is_torch(x) else np.maximum(x, 0.0)


def _sqrt_floor(x: Any, floor: float) -> Any:
    return torch.clamp_min(x, floor).sqrt() if _is_torch(x) else np.sqrt(np.maximum(x, floor))


def initial_weights(n_assets: int, kind: str) -> np.ndarray:
    """Weights at an episode start: all cash, or equal over the ``n_assets`` assets and cash."""
    if kind == "cash":
        w = np.zeros(n_assets + 1)
        w[-1] = 1.0
        return w
    return np.full(n_assets + 1, 1.0 / (n_assets + 1))


def differential_sharpe(net: Any, ema_a: Any, ema_b: Any, eta: float) -> tuple[Any, Any, Any]:
    """Moody & Saffell differential Sharpe ratio: returns ``(D_t, A_t, B_t)`` from ``(A_{t-1}, B_{t-1})``."""
    d_a = net - ema_a
    d_b = net * net - ema_b
    var = ema_b - ema_a * ema_a
    denom = _sqrt_floor(var, 1e-12) ** 3
    d = (ema_b * d_a - 0.5 * ema_a * d_b) / denom
    return d, ema_a + eta * d_a, ema_b + eta * d_b


def rolling_sigma(sum_x: Any, sum_x2: Any, n: Any) -> Any:
    """Population std from running sums over ``n`` values (0 for ``n <= 1``)."""
    mean = sum_x / n
    return _sqrt_floor(sum_x2 / n - mean * mean, 0.0)


def step_reward(
    cfg: EnvConfig, net: Any, turnover: Any, vix: Any, equity_weight: Any, sigma: Any = None, dsr: Any = None
) -> Any:
    """Reward of one step from its ingredients (``sigma``: rolling std for ``vol_penalty``; ``dsr``: the
    differential Sharpe ratio for ``differential_sharpe``)."""
    if cfg.reward == "net":
        return net
    if cfg.reward == "vix_shaped":
        fear = _relu(vix - cfg.vix_threshold) / cfg.vix_threshold
        return net - cfg.vix_lambda * abs(net) * vix / 20.0 - cfg.vix_penalty * fear * equity_weight * 1e-3
    if cfg.reward == "vol_penalty":
        return net - cfg.vol_lambda * sigma - cfg.vol_kappa * turnover
    if cfg.reward == "differential_sharpe":
        return dsr
    raise ValueError(f"unknown reward {cfg.reward!r}")


def _check_window(panel: MarketPanel, start_idx: int, end_idx: int) -> tuple[int, int]:
    start_idx, end_idx = int(start_idx), int(end_idx)
    if not 0 <= start_idx < end_idx <= panel.n_dates - 1:
        raise ValueError(f"window [{start_idx}, {end_idx}] invalid for a panel of {panel.n_dates} rows")
    return start_idx, end_idx


def _equity_mask(panel: MarketPanel, cfg: EnvConfig) -> np.ndarray:
    return np.array([a in cfg.equity_assets for a in panel.assets] + [False], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------
# Face 1: gymnasium.Env (NumPy, float64 arithmetic)
# ----------------------------------------------------------------------------------------------------


class PortfolioEnv(gym.Env):
    """Single-environment gymnasium face. ``reset(options={"start_idx": s})`` forces the start row.

    Arithmetic is float64; observations are cast to ``cfg.dtype``. ``info`` carries ``t`` (row of the
    next decision), ``net``, ``turnover``, ``weights`` (chosen at the close of t), ``equity``.
    """

    metadata = {"render_modes": []}

    def __init__(self, panel: MarketPanel, config: EnvConfig | None = None, start_idx: int = 0, end_idx: int | None = None):
        super().__init__()
        self.panel = panel
        self.cfg = cfg = config or EnvConfig()
        self.start_idx, self.end_idx = _check_window(panel, start_idx, panel.n_dates - 1 if end_idx is None else end_idx)
        self._feat = cfg.obs_features(panel)
        self._ret = panel.returns
        self._gap = panel.gaps_for(cfg.execution)
        self._vix = panel.vix
        self._eq = _equity_mask(panel, cfg)
        self._w0 = initial_weights(panel.n_assets, cfg.initial_weights)
        self._dtype = np.dtype(cfg.dtype)
        n = cfg.obs_dim(panel)
        bound = np.inf if cfg.clip_obs is None else cfg.clip_obs
        self.observation_space = gym.spaces.Box(-bound, bound, shape=(n,), dtype=self._dtype)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, shape=(panel.n_assets + 1,), dtype=self._dtype)
        self._t = self._next_start = self.start_idx

    def _obs(self) -> np.ndarray:
        return self.cfg.observe(self._feat[self._t], self._w_seen)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and options.get("start_idx") is not None:
            s = int(options["start_idx"])
            if not self.start_idx <= s < self.end_idx:
                raise ValueError(f"start_idx {s} outside [{self.start_idx}, {self.end_idx - 1}]")
        elif self.cfg.episode_starts == "sequential":
            s = self._next_start
        else:
            s = int(self.np_random.integers(self.start_idx, self.end_idx))
        self._t, self._steps, self._equity = s, 0, 1.0
        self._w = self._w0.copy()
        self._w_seen = self._w
        self._vol_buf = np.zeros(self.cfg.vol_window)
        self._dsr_a, self._dsr_b = 0.0, self.cfg.dsr_init_var
        return self._obs(), {"t": self._t}

    def step(self, action):
        cfg = self.cfg
        w_new = softmax_weights(np.asarray(action, dtype=np.float64))
        t = self._t
        gap = None if self._gap is None else self._gap[t + 1]
        res = rebalance(w_new, self._w, self._ret[t + 1], cfg.cost_rate, execution=cfg.execution, gap_returns=gap)
        net = float(res.net)
        sigma = dsr = None
        if cfg.reward == "vol_penalty":
            self._vol_buf[self._steps % cfg.vol_window] = net
            n = min(self._steps + 1, cfg.vol_window)
            sigma = rolling_sigma(self._vol_buf.sum(), (self._vol_buf * self._vol_buf).sum(), float(n))
        elif cfg.reward == "differential_sharpe":
            dsr, self._dsr_a, self._dsr_b = differential_sharpe(net, self._dsr_a, self._dsr_b, cfg.dsr_eta)
        reward = step_reward(cfg, net, float(res.turnover), self._vix[t], float(w_new @ self._eq), sigma, dsr)
        self._equity *= 1.0 + net
        self._steps += 1
        self._t = t + 1
        self._w = res.drifted
        self._w_seen = w_new if cfg.observed_weights == "target" else self._w
        self._next_start = self._t if self._t < self.end_idx else self.start_idx
        terminated = cfg.terminate_below is not None and self._equity < cfg.terminate_below
        truncated = (not terminated) and (self._steps >= cfg.episode_length or self._t >= self.end_idx)
        info = {"t": self._t, "net": net, "turnover": float(res.turnover), "weights": w_new, "equity": self._equity}
        return self._obs(), float(reward), bool(terminated), bool(truncated), info


# ----------------------------------------------------------------------------------------------------
# Face 2: batched Torch environment
# ----------------------------------------------------------------------------------------------------


class BatchedPortfolioEnv:
    """``num_envs`` environments stepped at once as tensors on ``device`` (same semantics as :class:`PortfolioEnv`).

    All panel data is moved to the device once in ``__init__``; :meth:`step` is a fixed sequence of
    tensor ops (no per-env Python loop, no host<->device copies). Finished environments are reset inside
    :meth:`step` (starts drawn with a ``torch.Generator`` on the device, seeded by ``seed``): the returned
    observation of a done env is the first observation of its next episode; with
    ``return_final_obs=True`` ``info["final_obs"]`` holds the observation the finished episode ended on
    (for bootstrapping truncated episodes).

    Layout: internally every per-asset quantity is stored assets-first (``[A+1, E]``, ``[D, E]``) because
    reductions over the short asset axis are ~10x faster that way on CPU; the public views are
    env-first (``obs [E, D]``, ``weights [E, A+1]``; non-contiguous transposes, no copies).
    :meth:`step_t` takes logits already assets-first ``[A+1, E]`` (what the PPO rollout produces).

    Public state (``[E]`` tensors unless said): ``t`` (row of the next decision), ``weights``
    ``[E, A+1]`` (held going into t), ``equity``, ``steps`` (steps taken in the episode), ``start``.
    """

    def __init__(
        self,
        panel: MarketPanel,
        config: EnvConfig | None = None,
        start_idx: int = 0,
        end_idx: int | None = None,
        num_envs: int = 64,
        device: str | torch.device = "cpu",
        seed: int = 0,
        return_final_obs: bool = False,
    ):
        self.panel = panel
        self.cfg = cfg = config or EnvConfig()
        self.start_idx, self.end_idx = _check_window(panel, start_idx, panel.n_dates - 1 if end_idx is None else end_idx)
        self.num_envs = E = int(num_envs)
        self.device = dev = torch.device(device)
        self.dtype = dt = torch.float32 if cfg.dtype == "float32" else torch.float64
        self.return_final_obs = return_final_obs
        A = panel.n_assets
        self.n_assets = A
        feat = cfg.obs_features(panel)
        self.n_features = F = feat.shape[1]
        self.obs_dim = F + A + 1
        # everything the rollout needs, on the device once (assets/features first)
        self._feat = torch.as_tensor(np.ascontiguousarray(feat.T), dtype=dt).to(dev)  # [F, T]
        ret = np.concatenate([panel.returns, np.zeros((panel.n_dates, 1))], axis=1).T  # cash return 0
        self._ret = torch.as_tensor(np.ascontiguousarray(ret), dtype=dt).to(dev)  # [A+1, T]
        gaps = panel.gaps_for(cfg.execution)
        self._gap = None if gaps is None else torch.as_tensor(
            np.ascontiguousarray(np.concatenate([gaps, np.zeros((panel.n_dates, 1))], axis=1).T), dtype=dt).to(dev)
        self._vix = torch.as_tensor(panel.vix, dtype=dt).to(dev)  # [T]
        self._eq = torch.as_tensor(_equity_mask(panel, cfg), dtype=dt).to(dev)  # [A+1]
        self._w0 = torch.as_tensor(initial_weights(A, cfg.initial_weights), dtype=dt).to(dev)[:, None]  # [A+1, 1]
        self._generator = torch.Generator(device=dev)
        self._generator.manual_seed(int(seed))
        self._term_level = -1.0 if cfg.terminate_below is None else float(cfg.terminate_below)
        self.t = torch.zeros(E, dtype=torch.long, device=dev)
        self.start = torch.zeros(E, dtype=torch.long, device=dev)
        self.steps = torch.zeros(E, dtype=torch.long, device=dev)
        self._w = self._w0.expand(-1, E).clone()  # [A+1, E]
        self._w_seen = self._w  # the weights in the observation (held, or the previous target)
        self.equity = torch.ones(E, dtype=dt, device=dev)
        self._vol_buf = torch.zeros(cfg.vol_window, E, dtype=dt, device=dev)
        self._dsr_a = torch.zeros(E, dtype=dt, device=dev)
        self._dsr_b = torch.full((E,), cfg.dsr_init_var, dtype=dt, device=dev)

    @property
    def weights(self) -> torch.Tensor:
        """Weights held going into row ``t``, ``[E, A+1]`` (a view)."""
        return self._w.t()

    # -- helpers -------------------------------------------------------------------------------------
    def _sample_starts(self) -> torch.Tensor:
        return torch.randint(
            self.start_idx, self.end_idx, (self.num_envs,), generator=self._generator, device=self.device
        )

    def _first_starts(self) -> torch.Tensor:
        """Starts of a full reset: random, or (sequential) env e at ``start + e * span // E``."""
        if self.cfg.episode_starts == "random":
            return self._sample_starts()
        span = self.end_idx - self.start_idx
        return self.start_idx + torch.arange(self.num_envs, device=self.device) * span // self.num_envs

    def _make_obs_t(self) -> torch.Tensor:
        """Observation, features first ``[D, E]`` (contiguous)."""
        out = torch.empty(self.obs_dim, self.num_envs, dtype=self.dtype, device=self.device)
        torch.index_select(self._feat, 1, self.t, out=out[: self.n_features])
        out[self.n_features :] = self._w_seen  # weights are in [0, 1]: never clipped
        return out

    # -- API -----------------------------------------------------------------------------------------
    def reset(self, starts: torch.Tensor | np.ndarray | list[int] | None = None) -> torch.Tensor:
        """Reset every env (random starts, or the given start rows ``[E]``); returns observations ``[E, D]``."""
        if starts is None:
            s = self._first_starts()
        else:
            s = torch.as_tensor(starts, dtype=torch.long).to(self.device).reshape(self.num_envs)
            if bool(((s < self.start_idx) | (s >= self.end_idx)).any()):
                raise ValueError(f"start rows must lie in [{self.start_idx}, {self.end_idx - 1}]")
        self.t = s.clone()
        self.start = s.clone()
        self.steps = torch.zeros_like(s)
        self._w = self._w0.expand(-1, self.num_envs).clone()
        self._w_seen = self._w
        self.equity = torch.ones(self.num_envs, dtype=self.dtype, device=self.device)
        self._vol_buf = torch.zeros_like(self._vol_buf)
        self._dsr_a = torch.zeros_like(self.equity)
        self._dsr_b = torch.full_like(self.equity, self.cfg.dsr_init_var)
        return self._make_obs_t().t()

    def step(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Apply target-weight logits ``[E, A+1]`` chosen at the close of row ``t``; earn ``t -> t+1``.

        Returns ``(obs [E, D], reward [E], terminated [E] bool, truncated [E] bool, info)`` with
        ``info = {"net", "turnover", "weights" (chosen, [E, A+1]), "equity" (after the step, before any
        reset)}`` (+ ``final_obs`` ``[E, D]``). Rewards, ``net`` and ``equity`` belong to day t+1.
        """
        return self.step_t(logits.t())

    def step_t(self, logits_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """:meth:`step` with assets-first logits ``[A+1, E]``."""
        cfg = self.cfg
        w_new = torch.softmax(logits_t.to(self.dtype).contiguous(), dim=0)  # [A+1, E]
        t1 = self.t + 1
        gap = None if self._gap is None else self._gap.index_select(1, t1)
        res = rebalance(w_new, self._w, self._ret.index_select(1, t1), cfg.cost_rate, axis=0,
                        execution=cfg.execution, gap_returns=gap)
        net = res.net
        sigma = dsr = None
        if cfg.reward == "vol_penalty":
            slot = torch.remainder(self.steps, cfg.vol_window)
            self._vol_buf = self._vol_buf.scatter(0, slot[None, :], net[None, :])
            n = torch.clamp_max(self.steps + 1, cfg.vol_window).to(self.dtype)
            sigma = rolling_sigma(self._vol_buf.sum(0), (self._vol_buf * self._vol_buf).sum(0), n)
        elif cfg.reward == "differential_sharpe":
            dsr, self._dsr_a, self._dsr_b = differential_sharpe(net, self._dsr_a, self._dsr_b, cfg.dsr_eta)
        reward = step_reward(cfg, net, res.turnover, self._vix.index_select(0, self.t), self._eq @ w_new, sigma, dsr)
        equity = self.equity * (1.0 + net)
        steps = self.steps + 1
        self.t, self._w = t1, res.drifted
        self._w_seen = w_new if cfg.observed_weights == "target" else self._w
        terminated = equity < self._term_level
        truncated = ((steps >= cfg.episode_length) | (t1 >= self.end_idx)) & ~terminated
        done = terminated | truncated
        info = {"net": net, "turnover": res.turnover, "weights": w_new.t(), "equity": equity}
        if self.return_final_obs:
            info["final_obs"] = self._make_obs_t().t()
        # vectorised auto-reset of finished envs
        if cfg.episode_starts == "random":
            new_start = self._sample_starts()
        else:  # continue where the episode ended; back to the window start at its end
            new_start = torch.where(t1 >= self.end_idx, self.start_idx, t1)
        self.t = torch.where(done, new_start, t1)
        self.start = torch.where(done, new_start, self.start)
        self.steps = steps.masked_fill(done, 0)
        self.equity = equity.masked_fill(done, 1.0)
        self._w = torch.where(done, self._w0, self._w)
        self._w_seen = torch.where(done, self._w0, self._w_seen)
        if cfg.reward == "vol_penalty":
            self._vol_buf = self._vol_buf.masked_fill(done, 0.0)
        elif cfg.reward == "differential_sharpe":
            self._dsr_a = self._dsr_a.masked_fill(done, 0.0)
            self._dsr_b = self._dsr_b.masked_fill(done, cfg.dsr_init_var)
        return self._make_obs_t().t(), reward, terminated, truncated, info
