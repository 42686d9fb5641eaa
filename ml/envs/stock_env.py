"""Batched stock-level environment over a :class:`~ml.envs.stock_panel.StockPanel`: ``E`` long-only books of
``S`` stocks stepped together as Torch tensors on one device (CPU or CUDA), no per-env Python loop,
vectorised auto-reset.

Timing (project convention, :mod:`ml.envs.stock_panel`): the observation of row t is built from data known
at the close of t; the action chosen on it is an order that fills at the open of t+1 and earns row t+1 -
the weights held at the close of t earn the overnight ``gap[t+1]``, the new ones the ``session[t+1]``.

Candidates of env e at row t: the day's top ``top_n`` stocks by P(buy) (:func:`ml.strategies.funnel.daily_top_n`,
scored and ``valid`` stocks only) **or** a stock env e holds (weight > 0), so the book can always sell.

Observation :class:`StockObs` of row t (``StockEnvConfig.dtype``):

* ``x [E, S, F+5]`` per stock: the panel's ``features[t]`` (raw units; NaN filled with the per-feature
  ``fill`` value - by default the mean over the training window's valid stock rows, which is exactly the
  policy normaliser's mean, so a missing value standardises to 0), ``buy_prob[t]``, ``sell_prob[t]``
  (NaN -> 0.5), the weight held at the close of t (after the day's drift), a held flag (weight > 0) and
  the top-N flag;
* ``g [E, M+2]`` global: the panel's ``market[t]`` columns, the cash weight, the number of names held / top_n;
* ``mask [E, S]`` bool: the candidate set.

The observation is a pure function of the row and the held weights (:meth:`BatchedStockEnv.observe`): the
off-policy replay buffer stores ``(t, w)`` and rebuilds observations from them.

Action ``a [E, S]`` reals, clamped to [-1, 1]; target weights by :func:`action_targets` with threshold
``h = threshold``: BUY (``a > h``) -> ``max_position * a``; SELL (``a < -h``) -> 0; HOLD (``|a| <= h``) ->
keep ``w_open`` (no trade); non-candidates -> 0 (they are not held). When the total exceeds
``max_invested``, the BUY targets of names not held are scaled down to fit; if the held names' targets
alone exceed it, every target is scaled by ``max_invested / total``. The rest is cash (earns 0).

Step (one earned day, the cost arithmetic of :func:`ml.backtest.sector_book.fill_day` for a long-only book)::

    eq_on  = 1 + w . gap[t+1]                       # overnight, weights of the close of t
    w_open = w * (1 + gap[t+1]) / eq_on              # weights at the open, before trading
    w_new  = action_targets(a, w_open, candidates)   # fill at the open of t+1
    cost   = cost_rate * sum|w_new - w_open|         # per unit of equity traded (5 bp slippage + 1 bp fee)
    net    = eq_on * (1 - cost) * (1 + w_new . session[t+1]) - 1
    w      = w_new * (1 + session[t+1]) / (1 + w_new . session[t+1])   # drift to the close of t+1
    reward = reward_scale * net                      # 100: daily net return in percent

Episodes: each (re)set picks a start row uniformly in ``[start_idx, end_idx - 1]`` (a dedicated
``torch.Generator`` seeded with ``seed``), all cash, equity 1; *truncated* after ``episode_length`` steps or
on reaching ``end_idx`` (the last row whose returns may be earned), *terminated* when equity falls below
``terminate_below`` (0.5; None disables).
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ml.artifacts import sha256_arrays
from ml.envs.stock_panel import StockPanel
from ml.strategies.funnel import DEFAULT_TOP_N, daily_top_n

__all__ = ["BatchedStockEnv", "StockEnvConfig", "StockObs", "action_targets", "compact", "feature_fill",
           "stock_data_hash"]

STOCK_COLUMNS = ("buy_prob", "sell_prob", "weight", "held", "top_n")  # after the panel's feature columns
GLOBAL_COLUMNS = ("cash", "n_held/top_n")  # after the panel's market columns


class StockEnvConfig(BaseModel):
    """Stock environment knobs (module docstring for the formulas). Weights are fractions of equity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_n: int = Field(default=DEFAULT_TOP_N, ge=1, description="prescreen candidates per day (top N by P(buy))")
    threshold: float = Field(default=0.15, ge=0.0, lt=1.0, description="|a| <= threshold: HOLD")
    max_position: float = Field(default=0.10, gt=0.0, le=1.0, description="target weight of a full-strength BUY")
    max_invested: float = Field(default=1.0, gt=0.0, le=1.0, description="cap on the sum of the target weights")
    cost_rate: float = Field(default=0.0006, ge=0.0, description="cost per unit of equity traded, per side "
                             "(5 bp slippage + 1 bp commission)")
    reward_scale: float = Field(default=100.0, gt=0.0, description="reward = reward_scale * net (percent)")
    episode_length: int = Field(default=252, ge=1, description="steps (trading days) per episode")
    terminate_below: float | None = Field(default=0.5, gt=0.0, lt=1.0, description="terminate when equity < this")
    dtype: Literal["float32", "float64"] = "float32"


class StockObs(NamedTuple):
    """Observation of ``E`` envs: per-stock ``x [E, S, Fx]``, global ``g [E, G]``, candidates ``mask [E, S]``."""

    x: torch.Tensor
    g: torch.Tensor
    mask: torch.Tensor

    def rows(self, idx: torch.Tensor) -> StockObs:
        """The observations of env rows ``idx``."""
        return StockObs(self.x[idx], self.g[idx], self.mask[idx])


def _torch(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)


def action_targets(a: Any, w_open: Any, candidates: Any, cfg: StockEnvConfig) -> Any:
    """Target weights ``[..., S]`` from actions ``a`` (clamped to [-1, 1]), the weights at the open ``w_open``
    and the candidate mask (module docstring for the BUY / SELL / HOLD mapping and the ``max_invested`` cap).
    NumPy in -> NumPy out (float64), Torch in -> Torch out (``w_open``'s dtype)."""
    numpy_in = not isinstance(w_open, torch.Tensor)
    w_open = _torch(w_open, torch.float64)
    a = _torch(a).to(w_open.dtype).clamp(-1.0, 1.0)
    cand = _torch(candidates).to(torch.bool)
    thr = cfg.threshold
    buy = (a > thr) & cand
    hold = (a.abs() <= thr) & cand
    target = torch.where(buy, cfg.max_position * a, torch.where(hold, w_open, torch.zeros_like(w_open)))
    held = w_open > 0
    total = target.sum(-1, keepdim=True)
    fixed = (target * held).sum(-1, keepdim=True)  # targets of the names held (BUY resized or HOLD)
    new = total - fixed  # BUY targets of names not held
    over = total > cfg.max_invested
    holds_fit = fixed <= cfg.max_invested
    scale_new = torch.where(over & holds_fit, (cfg.max_invested - fixed) / torch.clamp_min(new, 1e-300), 1.0)
    scale_all = torch.where(over & ~holds_fit, cfg.max_invested / torch.clamp_min(total, 1e-300), 1.0)
    target = target * scale_all * torch.where(held, 1.0, scale_new)
    return target.numpy() if numpy_in else target


def compact(mask: torch.Tensor, *per_stock: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Drop the non-candidate stock slots a batch does not need: ``(mask_c [B, K], idx [B, K], tensors_c)``
    with ``K`` the largest candidate count of the batch (>= 1), the candidates first in stock order
    (``idx``: their columns, for scattering results back). Each ``per_stock`` tensor ``[B, S, ...]`` is
    gathered the same way. Pooled quantities and the candidates' outputs of the equivariant networks are
    unchanged (up to float summation order), at ``K / S`` of the cost (~30 / 100 with top 25)."""
    k = max(int(mask.sum(-1).max()), 1) if mask.numel() else 1
    idx = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)[:, :k]
    out = []
    for t in per_stock:
        ix = idx.reshape(idx.shape + (1,) * (t.dim() - 2)).expand(*idx.shape, *t.shape[2:])
        out.append(t.gather(1, ix))
    return mask.gather(1, idx), idx, out


def feature_fill(panel: StockPanel, start_idx: int, end_idx: int) -> np.ndarray:
    """Per-feature fill value ``[F]`` for NaN features: the mean over the valid stock rows of panel rows
    ``[start_idx, end_idx]`` (every feature is finite there), else over the finite values, else 0."""
    sl = slice(int(start_idx), int(end_idx) + 1)
    feats, valid = panel.features[sl], panel.valid[sl]
    rows = feats[valid]
    if rows.shape[0] == 0:
        rows = feats.reshape(-1, feats.shape[-1])
    with np.errstate(all="ignore"):
        n = np.isfinite(rows).sum(0)
        mean = np.where(n > 0, np.nansum(np.where(np.isfinite(rows), rows, 0.0), axis=0) / np.maximum(n, 1), 0.0)
    return mean.astype(np.float64)


def stock_data_hash(panel: StockPanel, start_idx: int, end_idx: int) -> str:
    """sha256 (hex) of panel rows ``start_idx .. end_idx`` (inclusive) of every array the environment reads,
    plus the tickers and column names: identifies the data a stock policy was trained on."""
    names = b"".join("|".join(n).encode() + b"#" for n in (panel.tickers, panel.feature_names, panel.market_names))
    sl = slice(int(start_idx), int(end_idx) + 1)
    arrays = (panel.features, panel.buy_prob, panel.sell_prob, panel.gap, panel.session, panel.market)
    return sha256_arrays(
        b"regimeflow.stock_panel/1" + names,
        [panel.dates[sl].astype("int64"), *(np.asarray(a[sl], dtype=np.float64) for a in arrays),
         np.asarray(panel.valid[sl], dtype=np.uint8)],
    )


class BatchedStockEnv:
    """``num_envs`` stock books stepped at once as tensors on ``device`` (module docstring for the semantics).

    Panel rows ``[start_idx, end_idx]``: decisions at ``start_idx .. end_idx-1`` earn rows ``start_idx+1 ..
    end_idx``. ``fill`` ``[F]``: the values of NaN features (default :func:`feature_fill` of the window;
    evaluation passes the policy's training-window values). All panel data is moved to the device once.

    Public state (``[E]`` unless said): ``t`` (row of the next decision), ``w`` ``[E, S]`` (weights held at the
    close of t), ``equity``, ``steps`` (in the episode), ``start``. Names: ``stock_feature_names`` (the
    ``x`` columns), ``global_feature_names`` (the ``g`` columns); dims ``x_dim``, ``g_dim``, ``n_stocks``.
    """

    def __init__(self, panel: StockPanel, config: StockEnvConfig | None = None, start_idx: int = 0,
                 end_idx: int | None = None, num_envs: int = 64, device: str | torch.device = "cpu", seed: int = 0,
                 fill: np.ndarray | torch.Tensor | None = None):
        self.panel = panel
        self.cfg = cfg = config or StockEnvConfig()
        start_idx, end_idx = int(start_idx), int(panel.n_dates - 1 if end_idx is None else end_idx)
        if not 0 <= start_idx < end_idx <= panel.n_dates - 1:
            raise ValueError(f"window [{start_idx}, {end_idx}] invalid for a stock panel of {panel.n_dates} rows")
        self.start_idx, self.end_idx = start_idx, end_idx
        self.num_envs = E = int(num_envs)
        self.device = dev = torch.device(device)
        self.dtype = dt = torch.float32 if cfg.dtype == "float32" else torch.float64
        self.n_stocks = S = panel.n_stocks
        self.n_features = F = len(panel.feature_names)
        self.stock_feature_names = [*panel.feature_names, *STOCK_COLUMNS]
        self.global_feature_names = [*panel.market_names, *GLOBAL_COLUMNS]
        self.x_dim, self.g_dim = len(self.stock_feature_names), len(self.global_feature_names)
        self.fill = (feature_fill(panel, start_idx, end_idx) if fill is None
                     else np.asarray(torch.as_tensor(fill).cpu(), dtype=np.float64).reshape(F))
        feats = np.where(np.isnan(panel.features), self.fill, panel.features)
        probs = np.stack([np.nan_to_num(panel.buy_prob, nan=0.5), np.nan_to_num(panel.sell_prob, nan=0.5)], -1)
        static = np.concatenate([feats, probs], axis=-1)  # [T, S, F+2]
        if not np.isfinite(static).all():
            raise ValueError("stock features contain inf (NaN is filled, inf is not)")

        def put(arr: np.ndarray, dtype: torch.dtype = dt) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(arr), dtype=dtype).to(dev)

        self._static = put(static)
        self._top = put(daily_top_n(panel.buy_prob, panel.valid, cfg.top_n), torch.bool)  # [T, S]
        self._gap, self._session = put(panel.gap), put(panel.session)  # [T, S]
        self._market = put(panel.market)  # [T, M]
        self._generator = torch.Generator(device=dev)
        self._generator.manual_seed(int(seed))
        self._term_level = -1.0 if cfg.terminate_below is None else float(cfg.terminate_below)
        self.t = torch.full((E,), start_idx, dtype=torch.long, device=dev)
        self.start = self.t.clone()
        self.steps = torch.zeros(E, dtype=torch.long, device=dev)
        self.w = torch.zeros(E, S, dtype=dt, device=dev)
        self.equity = torch.ones(E, dtype=dt, device=dev)

    # -- observation -----------------------------------------------------------------------------------
    def observe(self, t: torch.Tensor, w: torch.Tensor) -> StockObs:
        """Observation of rows ``t [B]`` (long) with weights ``w [B, S]`` held at their close (any ``B``)."""
        w = w.to(self.dtype)
        top = self._top.index_select(0, t)
        held = w > 0
        x = torch.cat([self._static.index_select(0, t), w[..., None], held[..., None].to(self.dtype),
                       top[..., None].to(self.dtype)], dim=-1)
        n_held = held.sum(-1, keepdim=True).to(self.dtype) / self.cfg.top_n
        g = torch.cat([self._market.index_select(0, t), 1.0 - w.sum(-1, keepdim=True), n_held], dim=-1)
        return StockObs(x, g, top | held)

    def candidates(self, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` bool: top N of row t or held."""
        return self._top.index_select(0, t) | (w > 0)

    def train_stats(self) -> tuple[tuple[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray, float]]:
        """Normaliser statistics ``((mean_x, var_x, n), (mean_g, var_g, n))`` (float64) of this env's window:
        feature and probability columns over its valid stock rows (NaN filled as observed), market columns over
        its rows; weight ``0 / max_position^2``, flags, cash and ``n_held/top_n`` ``0 / 1`` (unscaled)."""
        sl = slice(self.start_idx, self.end_idx + 1)
        static = self._static[sl].to(torch.float64).cpu().numpy()[self.panel.valid[sl]]  # [N, F+2]
        if static.shape[0] == 0:
            static = np.zeros((1, self.n_features + 2))
        mean_x = np.r_[static.mean(0), 0.0, 0.0, 0.0]
        var_x = np.r_[static.var(0), self.cfg.max_position ** 2, 1.0, 1.0]
        market = self.panel.market[sl].astype(np.float64)
        mean_g, var_g = np.r_[market.mean(0), 0.0, 0.0], np.r_[market.var(0), 1.0, 1.0]
        return (mean_x, var_x, float(static.shape[0])), (mean_g, var_g, float(market.shape[0]))

    # -- episodes --------------------------------------------------------------------------------------
    def _sample_starts(self) -> torch.Tensor:
        return torch.randint(self.start_idx, self.end_idx, (self.num_envs,), generator=self._generator,
                             device=self.device)

    def reset(self, starts: Any = None) -> StockObs:
        """Reset every env (random starts, or the given rows ``[E]``), all cash; returns the observations."""
        if starts is None:
            s = self._sample_starts()
        else:
            s = torch.as_tensor(starts, dtype=torch.long).to(self.device).reshape(self.num_envs)
            if bool(((s < self.start_idx) | (s >= self.end_idx)).any()):
                raise ValueError(f"start rows must lie in [{self.start_idx}, {self.end_idx - 1}]")
        self.t, self.start = s.clone(), s.clone()
        self.steps = torch.zeros_like(s)
        self.w = torch.zeros_like(self.w)
        self.equity = torch.ones_like(self.equity)
        return self.observe(self.t, self.w)

    def step(self, action: torch.Tensor) -> tuple[StockObs, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Apply actions ``[E, S]`` decided at the close of row ``t``; earn row ``t+1``.

        Returns ``(obs, reward [E], terminated [E], truncated [E], info)``; ``info``: ``net`` (daily net return),
        ``turnover`` (sum |w_new - w_open|), ``weights`` (``w_new`` ``[E, S]``, held from the open of t+1),
        ``equity`` (after the step), ``final_obs`` (the observation before any auto-reset, to bootstrap from)
        and its ``final_t`` / ``final_w`` (row and weights, for :meth:`observe`). A finished env's ``obs`` is
        the first observation of its next episode."""
        cfg = self.cfg
        t, w = self.t, self.w
        t1 = t + 1
        cand = self.candidates(t, w)
        gap, session = self._gap.index_select(0, t1), self._session.index_select(0, t1)
        eq_on = 1.0 + (w * gap).sum(-1)
        w_open = w * (1.0 + gap) / eq_on[:, None]
        w_new = action_targets(action.to(self.dtype), w_open, cand, cfg)
        turnover = (w_new - w_open).abs().sum(-1)
        sess = 1.0 + (w_new * session).sum(-1)
        net = eq_on * (1.0 - cfg.cost_rate * turnover) * sess - 1.0
        w_next = w_new * (1.0 + session) / sess[:, None]
        equity = self.equity * (1.0 + net)
        steps = self.steps + 1
        terminated = equity < self._term_level
        truncated = ((steps >= cfg.episode_length) | (t1 >= self.end_idx)) & ~terminated
        done = terminated | truncated
        final_obs = self.observe(t1, w_next)
        info = {"net": net, "turnover": turnover, "weights": w_new, "equity": equity, "final_obs": final_obs,
                "final_t": t1, "final_w": w_next}
        # vectorised auto-reset of the finished envs (all cash at a fresh random start)
        new_start = self._sample_starts()
        self.t = torch.where(done, new_start, t1)
        self.start = torch.where(done, new_start, self.start)
        self.steps = steps.masked_fill(done, 0)
        self.equity = equity.masked_fill(done, 1.0)
        self.w = w_next.masked_fill(done[:, None], 0.0)
        rows = done.nonzero().squeeze(-1)
        if rows.numel():  # rebuild only the reset rows
            part = self.observe(self.t[rows], self.w[rows])
            obs = StockObs(*(full.index_copy(0, rows, p) for full, p in zip(final_obs, part)))
        else:
            obs = final_obs
        return obs, cfg.reward_scale * net, terminated, truncated, info
