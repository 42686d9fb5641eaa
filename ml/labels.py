"""Forward-looking labels: the ONLY module allowed to look into the future.

For each (ticker, date t) and horizon h (trading days = rows of the ticker):

* ``fwd_ret_{h}d`` = close_{t+h} / close_t - 1 (simple return of the adjusted close, i.e. a
  position entered at the close of t and exited at the close of t+h);
* ``buy_{h}d`` = 1 if fwd_ret > +theta_h else 0; ``sell_{h}d`` = 1 if fwd_ret < -theta_h else 0
  (Int8; both 0 in the dead zone).

The last h rows of every ticker have no future: all their label columns are **null** (never 0).
A label dated t is known only at the close of t+h, so walk-forward folds must embargo
:data:`MAX_LABEL_HORIZON` rows between a training fold's last label date and the test period.
Default thresholds scale roughly with sqrt(h) x typical daily vol (~1.2 %): 1 % / 2 % / 4 %.
"""
from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.features._common import ENGINE, KEYS, validate_bars

#: Label horizons in trading days.
LABEL_HORIZONS: tuple[int, ...] = (1, 5, 21)
#: Largest horizon: the embargo (rows) between training labels and test features.
MAX_LABEL_HORIZON: int = max(LABEL_HORIZONS)
#: Default buy/sell thresholds theta_h (simple-return fraction) per horizon.
DEFAULT_THRESHOLDS: dict[int, float] = {1: 0.01, 5: 0.02, 21: 0.04}
#: Horizon of the primary classification target used by default downstream.
PRIMARY_HORIZON: int = 5


class LabelConfig(BaseModel):
    """Horizons (trading days) and their thresholds (fraction, e.g. 0.02 = 2 %)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizons: tuple[int, ...] = LABEL_HORIZONS
    thresholds: dict[int, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))

    @model_validator(mode="after")
    def _check(self) -> "LabelConfig":
        if not self.horizons or any(h <= 0 for h in self.horizons):
            raise ValueError("horizons must be positive integers")
        missing = [h for h in self.horizons if h not in self.thresholds]
        if missing:
            raise ValueError(f"no threshold for horizons {missing}")
        if any(self.thresholds[h] < 0 for h in self.horizons):
            raise ValueError("thresholds must be >= 0")
        return self

    @property
    def max_horizon(self) -> int:
        return max(self.horizons)


def label_columns(horizons: tuple[int, ...] = LABEL_HORIZONS) -> list[str]:
    """Output label column names, in output order."""
    return [c for h in horizons for c in (f"fwd_ret_{h}d", f"buy_{h}d", f"sell_{h}d")]


def label_horizon(column: str) -> int:
    """Horizon (rows) carried by a label column name, e.g. ``buy_5d`` -> 5."""
    return int(column.rsplit("_", 1)[1].removesuffix("d"))


def compute_labels(
    bars: pl.DataFrame | pl.LazyFrame,
    config: LabelConfig | None = None,
    *,
    thresholds: Mapping[int, float] | None = None,
) -> pl.DataFrame:
    """Forward returns and buy/sell labels per (ticker, date), sorted by ticker, date.

    ``thresholds`` overrides ``config.thresholds`` for the given horizons.
    """
    cfg = config or LabelConfig()
    theta = {**cfg.thresholds, **(thresholds or {})}
    df = validate_bars(bars)
    c = pl.col("close")
    exprs: list[pl.Expr] = []
    for h in cfg.horizons:
        fwd = (c.shift(-h) / c - 1.0).over("ticker")
        name = f"fwd_ret_{h}d"
        exprs.append(fwd.alias(name))
    lf = df.lazy().select(*KEYS, *exprs)
    out: list[pl.Expr] = []
    for h in cfg.horizons:
        f = pl.col(f"fwd_ret_{h}d")
        out += [
            f,
            (f > theta[h]).cast(pl.Int8).alias(f"buy_{h}d"),
            (f < -theta[h]).cast(pl.Int8).alias(f"sell_{h}d"),
        ]
    return lf.select(*KEYS, *out).collect(engine=ENGINE)
