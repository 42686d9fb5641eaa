"""VIX regimes per trading date: 4 model bands and 5 reporting buckets.

Bands (model routing): low < 15 <= moderate < 20 <= high < 30 <= extreme.
Buckets (reporting):   calm < 15 <= normal < 20 <= elevated < 25 <= stress < 35 <= panic.
Intervals are left-closed, right-open ([a, b)) by default, so a VIX of exactly 20 is "high"/"elevated";
``closed="right"`` gives (a, b] (pandas ``pd.cut``, the seed article's convention: 20 is "moderate"/"normal").

Timing: the row dated t carries the VIX close of t (CBOE, 16:15 ET) with the default
``vix_lag_days=0`` -- the project's end-of-day batch runs after 16:15 ET (see
``ml.features.FeatureConfig``); use 1 for a strict "known at the 16:00 equity close" convention.
On a trading calendar the value is the last VIX close dated <= t (as-of), at most
``max_staleness_days`` calendar days old, so CBOE holiday rows (e.g. 2022-05-30) never become rows;
the lag counts calendar rows.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.folds import as_day_array

BANDS: tuple[str, ...] = ("low", "moderate", "high", "extreme")
BUCKETS: tuple[str, ...] = ("calm", "normal", "elevated", "stress", "panic")
MODEL_REGIMES: tuple[str, ...] = ("low", "moderate", "high")
_BAND_TO_MODEL = {"low": "low", "moderate": "moderate", "high": "high", "extreme": "high"}

VIX_REGIMES_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "vix": pl.Float64,
    "band": pl.Utf8,
    "bucket": pl.Utf8,
}


class VixRegimeConfig(BaseModel):
    """Thresholds (VIX index points) and timing of the VIX regimes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    band_edges: tuple[float, float, float] = (15.0, 20.0, 30.0)
    bucket_edges: tuple[float, float, float, float] = (15.0, 20.0, 25.0, 35.0)
    vix_lag_days: int = Field(default=0, ge=0, le=5)
    max_staleness_days: int = Field(default=5, ge=0, le=30)
    symbol: str = "VIX"
    closed: Literal["left", "right"] = Field(default="left", description="interval side that includes its edge: "
                                             "left = [a, b) (default), right = (a, b] (pd.cut)")

    @model_validator(mode="after")
    def _increasing(self) -> VixRegimeConfig:
        for name in ("band_edges", "bucket_edges"):
            e = getattr(self, name)
            if any(b <= a for a, b in zip(e, e[1:])):
                raise ValueError(f"{name} must be strictly increasing, got {e}")
        return self


def _label(values: np.ndarray, edges: Sequence[float], names: Sequence[str], closed: str = "left") -> list[str | None]:
    # [a, b): a value equal to an edge belongs to the interval above it (searchsorted right); (a, b]: below
    idx = np.searchsorted(np.asarray(edges, dtype=float), values, side="right" if closed == "left" else "left")
    names_arr = np.array(names, dtype=object)
    out = names_arr[np.clip(idx, 0, len(names) - 1)]
    out[~np.isfinite(values)] = None
    return out.tolist()


def vix_band(vix: float, config: VixRegimeConfig | None = None) -> str:
    """4-band label of one VIX level."""
    cfg = config or VixRegimeConfig()
    return _label(np.array([vix], dtype=float), cfg.band_edges, BANDS, cfg.closed)[0]


def vix_bucket(vix: float, config: VixRegimeConfig | None = None) -> str:
    """5-bucket reporting label of one VIX level."""
    cfg = config or VixRegimeConfig()
    return _label(np.array([vix], dtype=float), cfg.bucket_edges, BUCKETS, cfg.closed)[0]


def vix_buckets(values: np.ndarray | Sequence[float], config: VixRegimeConfig | None = None) -> list[str | None]:
    """5-bucket reporting labels of many VIX levels (``config.closed`` intervals; None where not finite)."""
    cfg = config or VixRegimeConfig()
    return _label(np.asarray(values, dtype=float), cfg.bucket_edges, BUCKETS, cfg.closed)


def vix_regimes(
    index_bars: pl.DataFrame,
    calendar: pl.Series | pl.DataFrame | Sequence[date] | np.ndarray | None = None,
    config: VixRegimeConfig | None = None,
) -> pl.DataFrame:
    """One row per date: ``date``, ``vix`` (index points), ``band``, ``bucket`` (nulls where no VIX).

    ``index_bars``: INDEX_BARS_SCHEMA frame (only ``config.symbol`` rows are used).
    ``calendar``: trading dates (Series, frame with a ``date`` column, list, datetime64 array);
    when given, the output has exactly one row per calendar date
    (as-of join, CBOE holiday rows dropped). Without it, one row per VIX date.
    """
    cfg = config or VixRegimeConfig()
    vix = (
        index_bars.lazy()
        .filter((pl.col("symbol") == cfg.symbol) & pl.col("close").is_not_null())
        .select(pl.col("date").cast(pl.Date), pl.col("close").cast(pl.Float64).alias("vix"))
        .unique("date", keep="last")
        .sort("date")
        .collect()
    )
    if calendar is None:
        frame = vix
    else:
        dates = pl.Series("date", as_day_array(calendar))  # Series, frame, list of dates or datetime64
        frame = (
            pl.DataFrame({"date": dates.cast(pl.Date)})
            .unique()
            .sort("date")
            .join_asof(vix, on="date", strategy="backward", tolerance=f"{cfg.max_staleness_days}d")
        )
    frame = frame.with_columns(pl.col("vix").shift(cfg.vix_lag_days))
    v = frame.get_column("vix").to_numpy().astype(float)  # nulls -> nan
    return frame.with_columns(
        pl.Series("band", _label(v, cfg.band_edges, BANDS, cfg.closed), dtype=pl.Utf8),
        pl.Series("bucket", _label(v, cfg.bucket_edges, BUCKETS, cfg.closed), dtype=pl.Utf8),
    ).select([pl.col(c).cast(t) for c, t in VIX_REGIMES_SCHEMA.items()])


def vol_regime_for_model(band: str | None) -> str | None:
    """Model regime of a band: low / moderate / high (extreme folds into high); None stays None."""
    if band is None:
        return None
    try:
        return _BAND_TO_MODEL[band]
    except KeyError:
        raise ValueError(f"unknown VIX band {band!r}; expected one of {BANDS}") from None


def vol_regime_expr(band_col: str = "band") -> pl.Expr:
    """Polars version of :func:`vol_regime_for_model` (nulls stay null)."""
    return pl.col(band_col).replace_strict(_BAND_TO_MODEL, default=None, return_dtype=pl.Utf8)
