"""Feature configuration (parameters that do not change feature names)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FeatureConfig(BaseModel):
    """Knobs of :func:`ml.features.compute_features`.

    ``vix_lag_days`` (default 0): trading-calendar rows by which VIX/VIX3M values are lagged.
    The VIX closes at 16:15 ET, 15 minutes after the equity close. This project's decision for
    date t is taken in the end-of-day batch after 16:15 ET (orders execute at the next session),
    so the VIX close of t is known at decision time and the default lag is 0. Use 1 for a strict
    "known at 16:00 ET" convention (e.g. market-on-close execution at t).

    ``vix_max_staleness_days``: an as-of VIX value older than this many calendar days is treated
    as missing (null) instead of being carried forward.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vix_lag_days: int = Field(default=0, ge=0, le=5)
    market_ticker: str = "SPY"
    vix_symbol: str = "VIX"
    vix3m_symbol: str = "VIX3M"
    vix_max_staleness_days: int = Field(default=5, ge=0, le=30)
