"""Rule-based baseline strategies, run through the same :func:`ml.backtest.engine.backtest` (same dates,
same cost arithmetic) as the learned policies.

Each baseline is a :class:`BaselineSchedule`: target weights ``[n, A+1]`` per decision row
``start_idx .. end_idx-1`` (cash last) plus the days on which the book trades to them; between those days
the weights drift (buy and hold). Timing: a target chosen at the close of row t uses only data known at
that close (the VIX of row t, already lagged as configured in the panel) and earns ``returns[t+1]``.

Baselines (names are the keys of :func:`run_baselines`):

* ``spy_buy_hold``: 100% SPY bought at the first decision, never rebalanced;
* ``equal_weight``: 25% each SPY/QQQ/TLT/GLD, rebalanced at the close of the first trading day of each month;
* ``sixty_forty``: 60% SPY / 40% TLT, rebalanced monthly;
* ``vix_rule``: equity share by the VIX band of t (:class:`~ml.regimes.vix.VixRegimeConfig` edges, default
  low < 15 <= moderate < 20 <= high < 30 <= extreme: 80/60/35/10%) split equally SPY/QQQ, the rest split
  equally TLT/GLD/cash;
* ``vix_switch`` (thesis rule): 100% SPY, but ``switch_equity`` (50%) SPY and the rest cash while the
  trailing ``switch_window``-row mean of the VIX (rows ending at t) is above ``switch_threshold`` (25).

The two VIX strategies trade per ``signal_rebalance``: ``"on_change"`` (default; only when the target
changes, so the weights drift in between), ``"on_change_monthly"`` (also at each month start) or
``"daily"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.backtest.engine import BacktestResult, RebalanceRule, backtest, month_start_mask
from ml.costs import Execution
from ml.data.universe import ALLOCATION_ASSETS
from ml.regimes.vix import VixRegimeConfig
from ml.strategies.vix_switcher import trailing_mean

if TYPE_CHECKING:
    from ml.envs.market_panel import MarketPanel

__all__ = [
    "BASELINE_NAMES",
    "BaselineConfig",
    "BaselineSchedule",
    "baseline_schedules",
    "equal_weight",
    "run_baselines",
    "sixty_forty",
    "spy_buy_hold",
    "vix_moving_average",
    "vix_rule",
    "vix_switch",
]

BASELINE_NAMES: tuple[str, ...] = ("spy_buy_hold", "equal_weight", "sixty_forty", "vix_rule", "vix_switch")


class BaselineConfig(BaseModel):
    """Knobs of the baselines (see the module docstring). VIX levels in index points, shares in [0, 1]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    names: tuple[str, ...] = BASELINE_NAMES
    cost_multiplier: float = Field(default=1.0, ge=0.0)
    initial_weights: Literal["cash", "equal"] = "cash"
    vix_regime: VixRegimeConfig = VixRegimeConfig()
    #: equity share (SPY+QQQ) for the bands low, moderate, high, extreme
    vix_rule_equity: tuple[float, float, float, float] = (0.80, 0.60, 0.35, 0.10)
    switch_window: int = Field(default=10, ge=1, description="rows in the VIX moving average")
    switch_threshold: float = Field(default=25.0, gt=0.0, description="VIX MA above which equity is cut")
    switch_equity: float = Field(default=0.5, ge=0.0, le=1.0, description="SPY share while switched")
    signal_rebalance: Literal["on_change", "on_change_monthly", "daily"] = "on_change"

    @model_validator(mode="after")
    def _check(self) -> BaselineConfig:
        unknown = set(self.names) - set(BASELINE_NAMES)
        if unknown:
            raise ValueError(f"unknown baselines {sorted(unknown)}; known: {BASELINE_NAMES}")
        if any(not 0.0 <= s <= 1.0 for s in self.vix_rule_equity):
            raise ValueError("vix_rule_equity shares must lie in [0, 1]")
        return self


@dataclass(frozen=True)
class BaselineSchedule:
    """Targets ``[n, A+1]`` (row i chosen at the close of row ``start_idx + i``) and the rebalance rule."""

    name: str
    weights: np.ndarray
    rebalance: RebalanceRule


def _col(panel: MarketPanel, ticker: str) -> int:
    try:
        return panel.assets.index(ticker)
    except ValueError:
        raise ValueError(f"baseline needs {ticker!r} in the panel assets {panel.assets}") from None


def _const(panel: MarketPanel, start_idx: int, end_idx: int, alloc: dict[str, float]) -> np.ndarray:
    w = np.zeros(panel.n_assets + 1)
    for t, x in alloc.items():
        w[-1 if t == "cash" else _col(panel, t)] += x
    return np.tile(w, (end_idx - start_idx, 1))


def _signal_rule(
    targets: np.ndarray, panel: MarketPanel, start_idx: int, end_idx: int, mode: str
) -> RebalanceRule:
    if mode == "daily":
        return "daily"
    mask = np.ones(targets.shape[0], dtype=bool)
    mask[1:] = (targets[1:] != targets[:-1]).any(axis=1)
    if mode == "on_change_monthly":
        mask |= month_start_mask(panel, start_idx, end_idx)
    return mask


def spy_buy_hold(panel: MarketPanel, start_idx: int, end_idx: int, config: BaselineConfig | None = None) -> BaselineSchedule:
    """100% SPY bought at the close of ``start_idx``, then held (drifts trivially: one asset)."""
    return BaselineSchedule("spy_buy_hold", _const(panel, start_idx, end_idx, {"SPY": 1.0}), "never")


def equal_weight(panel: MarketPanel, start_idx: int, end_idx: int, config: BaselineConfig | None = None) -> BaselineSchedule:
    """25% SPY/QQQ/TLT/GLD, rebalanced at the close of each month's first trading day (drifts in between)."""
    alloc = {t: 0.25 for t in ALLOCATION_ASSETS}
    return BaselineSchedule("equal_weight", _const(panel, start_idx, end_idx, alloc), "monthly")


def sixty_forty(panel: MarketPanel, start_idx: int, end_idx: int, config: BaselineConfig | None = None) -> BaselineSchedule:
    """60% SPY / 40% TLT, rebalanced monthly."""
    return BaselineSchedule("sixty_forty", _const(panel, start_idx, end_idx, {"SPY": 0.6, "TLT": 0.4}), "monthly")


def vix_rule(panel: MarketPanel, start_idx: int, end_idx: int, config: BaselineConfig | None = None) -> BaselineSchedule:
    """Equity share e by the VIX band of row t: e/2 SPY, e/2 QQQ, (1-e)/3 each TLT/GLD/cash."""
    cfg = config or BaselineConfig()
    vix = panel.vix[start_idx:end_idx]
    side = "right" if cfg.vix_regime.closed == "left" else "left"  # [a, b) or (a, b]
    band = np.searchsorted(np.asarray(cfg.vix_regime.band_edges, dtype=float), vix, side=side)  # 0..3
    eq = np.asarray(cfg.vix_rule_equity, dtype=float)[band]
    w = np.zeros((vix.size, panel.n_assets + 1))
    w[:, _col(panel, "SPY")] = eq / 2.0
    w[:, _col(panel, "QQQ")] = eq / 2.0
    rest = (1.0 - eq) / 3.0
    w[:, _col(panel, "TLT")] = rest
    w[:, _col(panel, "GLD")] = rest
    w[:, -1] = rest
    return BaselineSchedule("vix_rule", w, _signal_rule(w, panel, start_idx, end_idx, cfg.signal_rebalance))


def vix_moving_average(panel: MarketPanel, window: int) -> np.ndarray:
    """``[T]`` trailing mean of ``panel.vix`` over the ``window`` rows ending at t (fewer at the panel start)."""
    return trailing_mean(panel.vix, window)


def vix_switch(panel: MarketPanel, start_idx: int, end_idx: int, config: BaselineConfig | None = None) -> BaselineSchedule:
    """100% SPY; ``switch_equity`` SPY + rest cash while the VIX MA of row t > ``switch_threshold``."""
    cfg = config or BaselineConfig()
    ma = vix_moving_average(panel, cfg.switch_window)[start_idx:end_idx]
    spy = np.where(ma > cfg.switch_threshold, cfg.switch_equity, 1.0)
    w = np.zeros((ma.size, panel.n_assets + 1))
    w[:, _col(panel, "SPY")] = spy
    w[:, -1] = 1.0 - spy
    return BaselineSchedule("vix_switch", w, _signal_rule(w, panel, start_idx, end_idx, cfg.signal_rebalance))


_BUILDERS = {
    "spy_buy_hold": spy_buy_hold,
    "equal_weight": equal_weight,
    "sixty_forty": sixty_forty,
    "vix_rule": vix_rule,
    "vix_switch": vix_switch,
}


def baseline_schedules(
    panel: MarketPanel, start_idx: int, end_idx: int, config: BaselineConfig | None = None
) -> dict[str, BaselineSchedule]:
    """Schedules of ``config.names`` (all baselines by default) for the window ``[start_idx, end_idx]``."""
    cfg = config or BaselineConfig()
    return {name: _BUILDERS[name](panel, start_idx, end_idx, cfg) for name in cfg.names}


def run_baselines(
    panel: MarketPanel, start_idx: int, end_idx: int, cost_rate: float, config: BaselineConfig | None = None,
    execution: Execution = "close",
) -> dict[str, BacktestResult]:
    """Backtest every configured baseline on the window (decisions at rows ``start_idx .. end_idx-1``,
    earned dates ``panel.dates[start_idx+1 .. end_idx]``) with ``cost_rate * config.cost_multiplier`` per
    unit turnover, starting from ``config.initial_weights``, orders filling per ``execution`` (``ml.costs``).
    Returns ``{name: BacktestResult}``."""
    cfg = config or BaselineConfig()
    return {
        name: backtest(
            s.weights, panel, start_idx, end_idx, cost_rate,
            cost_multiplier=cfg.cost_multiplier, rebalance=s.rebalance, initial_weights=cfg.initial_weights,
            execution=execution,
        )
        for name, s in baseline_schedules(panel, start_idx, end_idx, cfg).items()
    }
