"""The stock book's regime-aware decision engine: signals -> conviction -> BUY / HOLD / SELL -> target weights.

Timing. Everything of day t is known at the close of t: the signals, the VIX close of t (its band, see
:mod:`ml.regimes.vix`), the closes and the weights held after the close of t. The target weights returned
trade at the open of t+1. Weights are long-only fractions of equity; cash is the rest.

Signals (each in [-1, 1], NaN = the source is missing for that stock), in the order of ``SOURCES``:
prescreen (``P(buy) - P(sell)``, :func:`ml.strategies.funnel.prescreen_signal`), the RL ensemble's action
(:func:`rl_signal`), the technical composite (:func:`technical_signal`) and fundamentals (not in the data:
the default config declares the three-signal variant, ``available = (prescreen, rl, technical)``).

Technical transforms of the feature-store columns, each into [-1, 1] (NaN in -> NaN out; the composite is
the mean of the finite components, 0 when none is):

* RSI-14 (0..100, contrarian):        ``clip((50 - rsi) / 20, -1, 1)``  (RSI 30 -> +1, 70 -> -1);
* MACD histogram (PPO form, fraction of EMA26, trend): ``tanh(macd_hist / 0.005)``;
* Bollinger %B-20 (0 = lower band, 1 = upper, contrarian): ``clip(1 - 2 * pctb, -1, 1)``;
* ADX-14 / +-DI-14 (0..100, trend):   ``sign(+DI - -DI) * clip((adx - 20) / 20, 0, 1)`` (no trend below ADX 20,
  full strength from ADX 40);
* SMA 50/200 cross state (+1 / -1):   the state itself;
* relative volume (volume / 20-day mean, confirmation): ``sign(ret_1d) * clip(rel_volume - 1, 0, 1)``.

Combination (:func:`combine`), per stock: the VIX band's source weights, restricted to the sources that are
available in the config AND finite for that stock, renormalised to sum 1; ``score = sum_k w_k s_k``;
``agreement`` = share of the active signals (``|s| > active_eps``) whose sign is the score's (0.5 when none
is active or the score is 0); ``conviction = score * (0.5 + 0.5 * agreement)``; BUY if conviction >
``threshold``, SELL if < ``-threshold``, else HOLD.

Sizing (:func:`target_weights`), fractions of equity: the band sets a size multiplier and the investable
total ``min(max_invested, 1 - cash_reserve)`` (extreme VIX: 0, everything is sold); a BUY gets
``min(multiplier * raw * investable, max_position_pct(vix))`` with ``raw`` its conviction share (or its
long-only max-Sharpe weight) within the day's BUY set; held HOLD names keep their weight; stop-loss hits
and SELLs go to 0; new BUYs are scaled down to fit the investable total; a held name traded fewer than
``cooldown_days`` sessions ago is not resized; trades smaller than ``min_trade`` are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.regimes.vix import BANDS

__all__ = ["ACTION_NAMES", "BUY", "DayDecision", "EngineConfig", "EngineOutput", "HOLD", "SELL", "SOURCES",
           "band_limits", "classify", "combine", "conviction_weights", "decide_day", "investable",
           "max_position_pct", "max_sharpe_weights", "rl_signal", "rl_vote", "signal_weights", "stop_distance",
           "stop_hit", "target_weights", "technical_components", "technical_signal"]

SOURCES: tuple[str, ...] = ("prescreen", "rl", "technical", "fundamental")
BUY, HOLD, SELL = 1, 0, -1
ACTION_NAMES: dict[int, str] = {BUY: "BUY", HOLD: "HOLD", SELL: "SELL"}
TECHNICAL_COMPONENTS: tuple[str, ...] = ("rsi", "macd", "bollinger", "adx_di", "sma_cross", "rel_volume")
MIN_COV_ROWS = 20  #: fewer complete return rows than this: max-Sharpe falls back to conviction weights


def _band_dict(low: float, moderate: float, high: float, extreme: float) -> dict[str, float]:
    return dict(zip(BANDS, (low, moderate, high, extreme)))


class EngineConfig(BaseModel):
    """Decision-engine rules (defaults: the reference design's numbers). Fractions of equity unless stated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regime_weights: dict[str, tuple[float, float, float, float]] = Field(
        default_factory=lambda: {"low": (0.30, 0.40, 0.20, 0.10), "moderate": (0.35, 0.30, 0.25, 0.10),
                                 "high": (0.35, 0.20, 0.35, 0.10), "extreme": (0.40, 0.10, 0.40, 0.10)},
        description="per VIX band: weights of (prescreen, rl, technical, fundamental)")
    available: tuple[str, ...] = Field(default=("prescreen", "rl", "technical"),
                                       description="sources in the data; the others' weights are dropped")
    equal_regime_weights: bool = Field(default=False, description="ablation: equal weights over the available "
                                       "sources in every band")
    threshold: float = Field(default=0.15, ge=0, lt=1, description="BUY if conviction > it, SELL if < -it")
    active_eps: float = Field(default=0.01, ge=0, description="a signal is active when |s| > active_eps")
    hold_as_buy: float = Field(default=0.5, ge=0, le=1, description="strength of a held stock's weak RL buy")
    size_multiplier: dict[str, float] = Field(default_factory=lambda: _band_dict(1.0, 0.75, 0.5, 0.0))
    max_invested: dict[str, float] = Field(default_factory=lambda: _band_dict(0.80, 0.60, 0.40, 0.0))
    cash_reserve: dict[str, float] = Field(default_factory=lambda: _band_dict(0.05, 0.07, 0.10, 0.15))
    max_position_base: float = Field(default=0.08, gt=0, le=1, description="per-name cap at calm VIX")
    max_position_floor: float = Field(default=0.02, gt=0, le=1, description="per-name cap, lowest")
    max_position_slope: float = Field(default=0.002, ge=0, description="cap cut per VIX point above the anchor")
    max_position_anchor: float = Field(default=20.0, description="VIX points where the cap starts to fall")
    stop_loss_floor: float = Field(default=0.05, gt=0, lt=1, description="smallest stop distance (fraction)")
    stop_loss_atr_mult: float = Field(default=2.0, ge=0, description="stop distance in ATRs (ATR as % of close)")
    min_trade: float = Field(default=0.005, ge=0, description="smallest |target - held| traded")
    cooldown_days: int = Field(default=5, ge=0, description="sessions after a trade before a held name is resized")
    weighting: Literal["conviction", "max_sharpe"] = "conviction"
    max_sharpe_lookback: int = Field(default=252, ge=MIN_COV_ROWS, description="sessions of returns for max-Sharpe")

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if not self.available or len(set(self.available)) != len(self.available) or \
                not set(self.available) <= set(SOURCES):
            raise ValueError(f"available must be distinct sources of {SOURCES}, got {self.available}")
        for name in ("regime_weights", "size_multiplier", "max_invested", "cash_reserve"):
            if set(getattr(self, name)) != set(BANDS):
                raise ValueError(f"{name} needs exactly the bands {BANDS}, got {sorted(getattr(self, name))}")
        avail = np.isin(SOURCES, self.available)
        for band, w in self.regime_weights.items():
            w = np.asarray(w, dtype=float)
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError(f"regime_weights[{band!r}] must be finite and >= 0, got {tuple(w)}")
            if not (w[avail] > 0).any():
                raise ValueError(f"regime_weights[{band!r}] has no positive weight on {self.available}")
        for name in ("size_multiplier", "max_invested", "cash_reserve"):
            for band, v in getattr(self, name).items():
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"{name}[{band!r}] must be in [0, 1], got {v}")
        if self.max_position_floor > self.max_position_base:
            raise ValueError("max_position_floor must not exceed max_position_base")
        return self


def _check_band(band: str) -> None:
    if band not in BANDS:
        raise ValueError(f"unknown VIX band {band!r}; expected one of {BANDS}")


def _band_weights(band: str, cfg: EngineConfig) -> np.ndarray:
    """The band's raw weights [4] with the unavailable sources zeroed (not renormalised)."""
    _check_band(band)
    avail = np.isin(SOURCES, cfg.available)
    w = np.ones(len(SOURCES)) if cfg.equal_regime_weights else np.asarray(cfg.regime_weights[band], dtype=float)
    return np.where(avail, w, 0.0)


def signal_weights(band: str, cfg: EngineConfig | None = None) -> np.ndarray:
    """Weights [4] of (prescreen, rl, technical, fundamental) in ``band``: unavailable sources dropped, the rest
    renormalised to sum 1 (equal over the available sources when ``equal_regime_weights``)."""
    w = _band_weights(band, cfg or EngineConfig())
    return w / w.sum()


# ----------------------------------------------------------------------------- RL and technical signals
def rl_signal(action: np.ndarray, held: np.ndarray, cfg: EngineConfig | None = None) -> np.ndarray:
    """The RL ensemble's per-stock action ``a`` in [-1, 1] as a signal: ``a`` when ``|a| > threshold`` (a BUY or
    SELL vote); HOLD-AS-BUY: a held stock (weight > 0) with ``0 < a <= threshold`` gives ``hold_as_buy * a``;
    any other HOLD gives 0; NaN ``a`` (no action) stays NaN (the source is missing)."""
    cfg = cfg or EngineConfig()
    a = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
    held_ = np.nan_to_num(np.asarray(held, dtype=float), nan=0.0) > 0
    vote = np.abs(a) > cfg.threshold
    weak_buy = held_ & (a > 0) & (a <= cfg.threshold)
    out = np.where(vote, a, np.where(weak_buy, cfg.hold_as_buy * a, 0.0))
    return np.where(np.isnan(a), np.nan, out)


def rl_vote(action: np.ndarray, held: np.ndarray, cfg: EngineConfig | None = None) -> np.ndarray:
    """The RL vote per stock as action codes (int8): BUY / SELL at ``+-threshold``, HOLD-AS-BUY -> BUY, else HOLD."""
    s = np.nan_to_num(rl_signal(action, held, cfg), nan=0.0)
    return np.where(s > 0, BUY, np.where(s < 0, SELL, HOLD)).astype(np.int8)


def technical_components(rsi_14, macd_hist, bb_pctb_20, adx_14, plus_di_14, minus_di_14, sma_cross_50_200,
                         rel_volume_20, ret_1d) -> np.ndarray:
    """The six technical components ``[n, 6]`` (order ``TECHNICAL_COMPONENTS``), each in [-1, 1], NaN where an
    input is missing. Inputs: feature-store columns of day t (see the module docstring for the transforms)."""
    f = [np.atleast_1d(np.asarray(x, dtype=float)) for x in (rsi_14, macd_hist, bb_pctb_20, adx_14, plus_di_14,
                                                             minus_di_14, sma_cross_50_200, rel_volume_20, ret_1d)]
    rsi, macd, pctb, adx, pdi, mdi, cross, rvol, ret = np.broadcast_arrays(*f)
    with np.errstate(invalid="ignore"):
        comps = (np.clip((50.0 - rsi) / 20.0, -1.0, 1.0),
                 np.tanh(macd / 0.005),
                 np.clip(1.0 - 2.0 * pctb, -1.0, 1.0),
                 np.sign(pdi - mdi) * np.clip((adx - 20.0) / 20.0, 0.0, 1.0),
                 np.clip(cross, -1.0, 1.0),
                 np.sign(ret) * np.clip(rvol - 1.0, 0.0, 1.0))
    return np.stack(comps, axis=-1)


def technical_signal(rsi_14, macd_hist, bb_pctb_20, adx_14, plus_di_14, minus_di_14, sma_cross_50_200,
                     rel_volume_20, ret_1d) -> np.ndarray:
    """The technical composite ``[n]`` in [-1, 1]: mean of the finite components (0 when none is finite)."""
    c = technical_components(rsi_14, macd_hist, bb_pctb_20, adx_14, plus_di_14, minus_di_14, sma_cross_50_200,
                             rel_volume_20, ret_1d)
    ok = np.isfinite(c)
    n = ok.sum(axis=-1)
    return np.where(n > 0, np.where(ok, c, 0.0).sum(axis=-1) / np.maximum(n, 1), 0.0)


# ----------------------------------------------------------------------------- combination
@dataclass(frozen=True)
class EngineOutput:
    """Per-stock result of :func:`combine` (arrays of length n; ``weights`` [n, 4] actually used)."""

    score: np.ndarray
    agreement: np.ndarray
    conviction: np.ndarray
    action: np.ndarray
    weights: np.ndarray


def classify(conviction: np.ndarray, cfg: EngineConfig | None = None) -> np.ndarray:
    """Action codes (int8): BUY if conviction > threshold, SELL if < -threshold, else (incl. NaN) HOLD."""
    cfg = cfg or EngineConfig()
    c = np.asarray(conviction, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(c > cfg.threshold, BUY, np.where(c < -cfg.threshold, SELL, HOLD)).astype(np.int8)


def combine(signals: np.ndarray, band: str, cfg: EngineConfig | None = None) -> EngineOutput:
    """Score, agreement, conviction and action of each row of ``signals`` [n, 4] (sources in ``SOURCES`` order,
    values clipped to [-1, 1], NaN = missing) in VIX ``band``. A row with no usable source scores 0 (HOLD)."""
    cfg = cfg or EngineConfig()
    s = np.atleast_2d(np.asarray(signals, dtype=float))
    if s.shape[-1] != len(SOURCES):
        raise ValueError(f"signals need {len(SOURCES)} columns {SOURCES}, got shape {s.shape}")
    s = np.clip(s, -1.0, 1.0)
    base = _band_weights(band, cfg)
    used = np.isfinite(s) & (base > 0)
    w = np.where(used, base, 0.0)
    tot = w.sum(axis=1, keepdims=True)
    w = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0)
    x = np.where(used, s, 0.0)
    score = (w * x).sum(axis=1)
    active = used & (np.abs(x) > cfg.active_eps)
    n_active = active.sum(axis=1)
    n_agree = (active & (np.sign(x) == np.sign(score)[:, None])).sum(axis=1)
    agreement = np.where((n_active > 0) & (score != 0), n_agree / np.maximum(n_active, 1), 0.5)
    conviction = score * (0.5 + 0.5 * agreement)
    return EngineOutput(score, agreement, conviction, classify(conviction, cfg), w)


# ----------------------------------------------------------------------------- risk limits
def band_limits(band: str, cfg: EngineConfig | None = None) -> tuple[float, float, float]:
    """(size multiplier, max invested, cash reserve) of ``band``; the last two are fractions of equity."""
    cfg = cfg or EngineConfig()
    _check_band(band)
    return cfg.size_multiplier[band], cfg.max_invested[band], cfg.cash_reserve[band]


def investable(band: str, cfg: EngineConfig | None = None) -> float:
    """Most of equity the book may hold in stocks in ``band``: ``min(max_invested, 1 - cash_reserve)``."""
    _, max_inv, cash = band_limits(band, cfg)
    return min(max_inv, 1.0 - cash)


def max_position_pct(vix, cfg: EngineConfig | None = None):
    """Per-name cap (fraction of equity) at VIX level ``vix`` (index points, close of t):
    ``max(floor, base - slope * max(0, vix - anchor))``; a NaN VIX gets the floor. Scalar in, float out."""
    cfg = cfg or EngineConfig()
    v = np.asarray(vix, dtype=float)
    cap = cfg.max_position_base - cfg.max_position_slope * np.maximum(0.0, v - cfg.max_position_anchor)
    out = np.where(np.isfinite(v), np.maximum(cfg.max_position_floor, cap), cfg.max_position_floor)
    return float(out) if out.ndim == 0 else out


def stop_distance(atr_pct, cfg: EngineConfig | None = None):
    """Stop-loss distance below the entry price (fraction): ``max(floor, atr_mult * atr_pct)`` with ``atr_pct``
    the ATR as a fraction of the close at entry; NaN ATR -> the floor."""
    cfg = cfg or EngineConfig()
    a = np.asarray(atr_pct, dtype=float)
    d = np.where(np.isfinite(a), np.maximum(cfg.stop_loss_floor, cfg.stop_loss_atr_mult * a), cfg.stop_loss_floor)
    return float(d) if d.ndim == 0 else d


def stop_hit(close: np.ndarray, entry_price: np.ndarray, atr_pct_at_entry: np.ndarray,
             cfg: EngineConfig | None = None) -> np.ndarray:
    """Bool per stock: the close of t is at or below ``entry_price * (1 - stop_distance)`` (NaN close or entry
    -> False). The exit trades at the open of t+1."""
    c = np.asarray(close, dtype=float)
    level = np.asarray(entry_price, dtype=float) * (1.0 - stop_distance(atr_pct_at_entry, cfg))
    with np.errstate(invalid="ignore"):
        return np.atleast_1d(np.isfinite(c) & np.isfinite(level) & (c <= level))


# ----------------------------------------------------------------------------- weighting
def conviction_weights(conviction: np.ndarray) -> np.ndarray:
    """Weights proportional to ``max(conviction, 0)`` (NaN -> 0), summing to 1; all zero -> zeros."""
    p = np.maximum(np.nan_to_num(np.asarray(conviction, dtype=float), nan=0.0), 0.0)
    tot = p.sum()
    return p / tot if tot > 0 else np.zeros_like(p)


def max_sharpe_weights(returns: np.ndarray, alpha: np.ndarray, cap: float) -> np.ndarray:
    """Long-only max-Sharpe weights [n] (sum 1, each in ``[0, max(cap, 1/n)]``) of the BUY names.

    ``returns`` [L, n]: their daily simple returns over the trailing window (up to the close of t; rows with a
    NaN dropped); ``alpha`` [n]: their convictions. Covariance: Ledoit-Wolf; expected daily returns
    ``mu_i = alpha_i * sigma_i`` (Grinold: signal x volatility). Solved by SLSQP from equal weights
    (deterministic). Falls back to :func:`conviction_weights` with n == 1, fewer than ``MIN_COV_ROWS``
    complete rows, no positive ``mu``, or a failed solve."""
    from scipy.optimize import minimize
    from sklearn.covariance import LedoitWolf

    a = np.nan_to_num(np.asarray(alpha, dtype=float), nan=0.0)
    r = np.asarray(returns, dtype=float)
    n = a.size
    if r.ndim != 2 or r.shape[1] != n:
        raise ValueError(f"returns must be [L, {n}], got shape {r.shape}")
    fallback = conviction_weights(a)
    if n <= 1:
        return fallback
    r = r[np.isfinite(r).all(axis=1)]
    if r.shape[0] < MIN_COV_ROWS:
        return fallback
    cov = LedoitWolf().fit(r).covariance_
    var = np.diag(cov)
    if not (var > 0).all():
        return fallback
    mu = a * np.sqrt(var)
    if not (mu > 0).any():
        return fallback
    m, sig = mu / mu.max(), cov / var.mean()  # rescaled: same optimum, well-conditioned objective

    def neg_sharpe(w):
        v = max(float(w @ sig @ w), 1e-18)
        return -float(m @ w) / np.sqrt(v)

    def grad(w):
        v = max(float(w @ sig @ w), 1e-18)
        return -m / np.sqrt(v) + float(m @ w) * (sig @ w) / v ** 1.5

    ub = max(float(cap), 1.0 / n)
    res = minimize(neg_sharpe, np.full(n, 1.0 / n), jac=grad, method="SLSQP", bounds=[(0.0, ub)] * n,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(n)}],
                   options={"maxiter": 500, "ftol": 1e-12})
    if not res.success or not np.isfinite(res.x).all():
        return fallback
    w = np.clip(res.x, 0.0, ub)
    return w / w.sum() if w.sum() > 0 else fallback


# ----------------------------------------------------------------------------- targets
def target_weights(held: np.ndarray, action: np.ndarray, conviction: np.ndarray, band: str, vix: float,
                   cfg: EngineConfig | None = None, *, days_since_trade: np.ndarray, stop: np.ndarray,
                   returns_window: np.ndarray | None = None) -> np.ndarray:
    """The day's target weights [S] (fractions of equity, >= 0), set at the close of t, traded at the open of t+1.

    ``held`` [S]: weights after the close of t; ``action`` / ``conviction`` [S]: HOLD / 0 for non-candidates;
    ``days_since_trade`` [S]: sessions since the name's last trade (large = never); ``stop`` [S]: stop-loss hits;
    ``returns_window`` [L, S]: trailing daily returns (needed for ``weighting="max_sharpe"``). Rules, in order:

    a. extreme band (multiplier or investable 0): all 0;
    b. stop hits and SELLs -> 0 (always go through: no cooldown, no min trade);
    c. BUYs: ``min(multiplier * raw * investable, max_position_pct(vix))``, raw over the BUY set by conviction
       share or max-Sharpe (cap ``max_position_pct / investable``);
    d. held HOLD names keep their weight;
    f. cooldown (applied before e so the fit respects it): a held name traded fewer than ``cooldown_days``
       sessions ago keeps its weight unless it exits; new entries are not subject to it;
    e. total > investable: new (not held) BUYs are scaled down to fit; if the held names alone exceed it, new
       BUYs get 0 and the held names outside cooldown are scaled proportionally to fit (as far as possible);
    g. min trade: a held name with ``0 < |target - held| < min_trade`` keeps its weight; a new entry below
       ``min_trade`` gets 0; new BUYs then shrink again if the kept weights pushed the total over.

    The total is <= investable unless the held weights that cooldown / min trade keep exceed it."""
    cfg = cfg or EngineConfig()
    h = np.maximum(np.nan_to_num(np.asarray(held, dtype=float), nan=0.0), 0.0)
    act = np.asarray(action)
    conv = np.nan_to_num(np.asarray(conviction, dtype=float), nan=0.0)
    dst = np.asarray(days_since_trade, dtype=float)
    stop_ = np.asarray(stop, dtype=bool)
    mult, _, _ = band_limits(band, cfg)
    inv = investable(band, cfg)
    if mult <= 0 or inv <= 0:                                     # a
        return np.zeros_like(h)
    cap = max_position_pct(vix, cfg)
    is_held = h > 0
    exits = stop_ | (act == SELL)                                 # b
    buy = (act == BUY) & ~exits
    target = np.where(is_held & ~exits, h, 0.0)                   # d (BUYs overwritten below)
    if buy.any():                                                 # c
        idx = np.flatnonzero(buy)
        if cfg.weighting == "max_sharpe":
            if returns_window is None:
                raise ValueError("weighting='max_sharpe' needs returns_window [L, S]")
            window = np.asarray(returns_window, dtype=float)[-cfg.max_sharpe_lookback:, idx]
            raw = max_sharpe_weights(window, conv[idx], cap / inv)
        else:
            raw = conviction_weights(conv[idx])
        target[idx] = np.minimum(mult * raw * inv, cap)
    frozen = is_held & ~exits & (dst < cfg.cooldown_days)        # f
    target[frozen] = h[frozen]
    new = buy & ~is_held
    if target.sum() > inv:                                        # e
        kept = target[~new].sum()
        if kept <= inv:
            target[new] *= (inv - kept) / target[new].sum()
        else:
            target[new] = 0.0
            adjustable = is_held & ~exits & ~frozen
            adj = target[adjustable].sum()
            if adj > 0:
                target[adjustable] *= max(inv - target[frozen].sum(), 0.0) / adj
    small = is_held & (target > 0) & (np.abs(target - h) < cfg.min_trade)   # g
    target[small] = h[small]
    target[new & (target < cfg.min_trade)] = 0.0
    excess = target.sum() - inv
    new_total = target[new].sum()
    if excess > 1e-12 and new_total > 0:
        target[new] *= max(new_total - excess, 0.0) / new_total
        target[new & (target < cfg.min_trade)] = 0.0
    return target


@dataclass(frozen=True)
class DayDecision:
    """One day's decisions for all S stocks (non-candidates: NaN score / agreement / conviction, HOLD, zero
    ``weights_used`` rows); ``targets`` trade at the open of t+1."""

    score: np.ndarray
    agreement: np.ndarray
    conviction: np.ndarray
    action: np.ndarray
    weights_used: np.ndarray
    targets: np.ndarray


def decide_day(signals: np.ndarray, candidates: np.ndarray, held: np.ndarray, band: str, vix: float,
               cfg: EngineConfig | None = None, *, days_since_trade: np.ndarray, stop: np.ndarray,
               returns_window: np.ndarray | None = None) -> DayDecision:
    """:func:`combine` on the candidate rows of ``signals`` [S, 4], then :func:`target_weights` for all S stocks
    (inputs of the close of t, targets for the open of t+1)."""
    cfg = cfg or EngineConfig()
    s = np.atleast_2d(np.asarray(signals, dtype=float))
    cand = np.asarray(candidates, dtype=bool)
    n = s.shape[0]
    score, agreement, conviction = (np.full(n, np.nan) for _ in range(3))
    action = np.full(n, HOLD, dtype=np.int8)
    weights = np.zeros((n, len(SOURCES)))
    if cand.any():
        out = combine(s[cand], band, cfg)
        score[cand], agreement[cand], conviction[cand] = out.score, out.agreement, out.conviction
        action[cand], weights[cand] = out.action, out.weights
    targets = target_weights(held, action, conviction, band, vix, cfg, days_since_trade=days_since_trade,
                             stop=stop, returns_window=returns_window)
    return DayDecision(score, agreement, conviction, action, weights, targets)
