"""Risk circuit breaker: a hand-coded overlay above any allocation policy.

At the close of t, after the policy chose target weights ``w`` (assets then cash, on the simplex), the
breaker caps the combined equity weight (default SPY+QQQ) at ``max_equity_weight`` when

* the VIX close of t is at or above ``vix_threshold`` (index points), or
* the strategy's trailing drawdown at the close of t, ``equity_t / max(equity over the last
  drawdown_window sessions) - 1``, is at or below ``-drawdown_limit`` (a fraction).

Equity weights are scaled down proportionally; the weight taken off goes to cash, or to the
defensive assets (default TLT/GLD, equal split) when ``destination="defensive"``. The result stays on
the simplex (non-negative, sums to 1). Both inputs are known at the close of t, so the overlay is causal.

It is off by default in research folds (the policy is judged on its own) and on by default for the
daily decision (see ``infra.resources.RiskResource``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.data.universe import DEFENSIVE_ASSETS, EQUITY_ASSETS
from ml.metrics import drawdown

__all__ = ["BreakerOutcome", "BreakerTracker", "CircuitBreakerConfig", "apply_circuit_breaker", "trailing_drawdown"]


class CircuitBreakerConfig(BaseModel):
    """Thresholds of the breaker; ``None`` switches a trigger off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vix_threshold: float | None = Field(default=30.0, gt=0.0, description="VIX close (index points) that trips it")
    drawdown_limit: float | None = Field(default=0.15, gt=0.0, lt=1.0,
                                         description="trailing drawdown (fraction, 0.15 = -15%) that trips it")
    drawdown_window: int = Field(default=252, ge=2, description="sessions of the trailing equity peak")
    max_equity_weight: float = Field(default=0.25, ge=0.0, le=1.0, description="cap on the equity weight when tripped")
    equity_assets: tuple[str, ...] = EQUITY_ASSETS
    destination: Literal["cash", "defensive"] = "cash"
    defensive_assets: tuple[str, ...] = DEFENSIVE_ASSETS

    @model_validator(mode="after")
    def _check(self) -> CircuitBreakerConfig:
        if set(self.equity_assets) & set(self.defensive_assets) and self.destination == "defensive":
            raise ValueError("an asset cannot be both an equity asset and a defensive asset")
        return self


@dataclass(frozen=True)
class BreakerOutcome:
    """Weights after the breaker and why. Arrays share the leading shape of the input weights."""

    weights: np.ndarray  # [..., A+1]
    vix_tripped: np.ndarray  # [...] bool
    drawdown_tripped: np.ndarray  # [...] bool
    equity_before: np.ndarray  # [...] combined equity weight chosen by the policy
    moved: np.ndarray  # [...] weight moved out of equity

    @property
    def active(self) -> np.ndarray:
        return self.vix_tripped | self.drawdown_tripped

    def reason(self, vix: float, drawdown: float, config: CircuitBreakerConfig, index: tuple = ()) -> str:
        """One readable line for element ``index`` (``""`` when the breaker did not trip)."""
        if not bool(self.active[index]):
            return ""
        parts = []
        if bool(self.vix_tripped[index]):
            parts.append(f"VIX {vix:.2f} >= {config.vix_threshold:.2f}")
        if bool(self.drawdown_tripped[index]):
            parts.append(f"trailing drawdown {drawdown:.1%} <= -{config.drawdown_limit:.1%} "
                         f"({config.drawdown_window} sessions)")
        eq = "+".join(config.equity_assets)
        moved = float(self.moved[index])
        where = "cash" if config.destination == "cash" else "/".join(config.defensive_assets)
        action = (f"{eq} {float(self.equity_before[index]):.3f} -> {float(self.equity_before[index]) - moved:.3f}, "
                  f"{moved:.3f} to {where}" if moved > 0 else f"{eq} already <= {config.max_equity_weight:.3f}")
        return "; ".join(parts) + ": " + action


def _columns(assets: Sequence[str], names: Sequence[str], what: str) -> list[int]:
    missing = [n for n in names if n not in assets]
    if missing:
        raise ValueError(f"circuit breaker {what} {missing} are not among the assets {list(assets)}")
    return [list(assets).index(n) for n in names]


def apply_circuit_breaker(
    weights: np.ndarray,
    assets: Sequence[str],
    vix: np.ndarray | float,
    drawdown: np.ndarray | float,
    config: CircuitBreakerConfig,
) -> BreakerOutcome:
    """Apply the breaker to target weights ``[..., A+1]`` (``assets`` = the A non-cash names, cash last).

    ``vix``: VIX close at the decision close (index points); ``drawdown``: trailing drawdown at the
    decision close (fraction <= 0). Both broadcast against the leading shape. NaN inputs never trip.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape[-1] != len(assets) + 1:
        raise ValueError(f"weights have {w.shape[-1]} columns, expected {len(assets)} assets + cash")
    lead = w.shape[:-1]
    vix = np.broadcast_to(np.asarray(vix, dtype=np.float64), lead)
    dd = np.broadcast_to(np.asarray(drawdown, dtype=np.float64), lead)
    with np.errstate(invalid="ignore"):
        vix_trip = (vix >= config.vix_threshold) if config.vix_threshold is not None else np.zeros(lead, bool)
        dd_trip = (dd <= -config.drawdown_limit) if config.drawdown_limit is not None else np.zeros(lead, bool)
    eq_cols = _columns(assets, config.equity_assets, "equity assets")
    equity = w[..., eq_cols].sum(-1)
    active = vix_trip | dd_trip
    moved = np.where(active, np.maximum(equity - config.max_equity_weight, 0.0), 0.0)
    out = w.copy()
    scale = np.where(moved > 0, config.max_equity_weight / np.where(equity > 0, equity, 1.0), 1.0)
    out[..., eq_cols] *= scale[..., None]
    if config.destination == "cash":
        out[..., -1] += moved
    else:
        def_cols = _columns(assets, config.defensive_assets, "defensive assets")
        out[..., def_cols] += moved[..., None] / len(def_cols)
    return BreakerOutcome(out, vix_trip, dd_trip, equity, moved)


def trailing_drawdown(equity: np.ndarray, window: int) -> float:
    """The breaker's drawdown input at the last point of ``equity``: ``equity_t / max(equity over the last
    window points) - 1`` (fraction <= 0; fewer points at the start). See :func:`ml.metrics.drawdown`."""
    return float(drawdown(np.asarray(equity, dtype=np.float64)[-int(window):], start_peak=None)[-1])


class BreakerTracker:
    """The breaker inside a sequential rollout: adjusts each day's weights from the VIX at the decision
    row and the rollout's own trailing drawdown, and records every activation.

    Use: ``w = tracker.adjust(row, w)`` before the step at panel row ``row``, then ``tracker.observe(net)``
    with the net return that step earned. ``activations``: ``(row, reason)`` pairs.
    """

    def __init__(self, config: CircuitBreakerConfig, assets: Sequence[str], vix: np.ndarray):
        self.config, self.assets, self.vix = config, tuple(assets), np.asarray(vix, dtype=np.float64)
        self._equity = [1.0]
        self.activations: list[tuple[int, str]] = []

    def drawdown(self) -> float:
        return trailing_drawdown(np.array(self._equity), self.config.drawdown_window)

    def adjust(self, row: int, weights: np.ndarray) -> np.ndarray:
        dd = self.drawdown()
        out = apply_circuit_breaker(weights, self.assets, self.vix[row], dd, self.config)
        if bool(out.active):
            self.activations.append((row, out.reason(float(self.vix[row]), dd, self.config)))
        return out.weights

    def observe(self, net_return: float) -> None:
        self._equity.append(self._equity[-1] * (1.0 + float(net_return)))
