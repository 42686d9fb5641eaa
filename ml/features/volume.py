"""Volume features (per ticker). A feature dated t uses only bars dated <= t.

* ``rel_volume_20`` = volume_t / mean(volume over the 20 rows ending at t).
* ``obv_slope_21``: OBV_t = OBV_{t-1} + sign(C_t - C_{t-1}) * V_t. Slope = OLS slope of OBV over
  the 21 rows ending at t (shares per day), divided by the 20-day mean volume -> "average daily
  volumes per day", roughly in [-1, 1]. Computed exactly as a fixed-weight sum of the 20 OBV
  increments (weights q(21-q)/1540, q = 1..20, oldest first), so it does not depend on where
  the cumulative OBV starts.
* ``vwap_dist_20`` = close / VWAP20 - 1, VWAP20 = sum(tp * V) / sum(V) over 20 rows,
  tp = (H + L + C) / 3 (a daily-bar proxy for the VWAP).
Zero-volume windows give null (not inf).
"""
from __future__ import annotations

import polars as pl

from ml.features._common import ENGINE, PREV_CLOSE, FeatureSpec, prepare_bars, roll_t, select_features

FAMILY = "volume"
OBV_WINDOW = 21
#: weights of the 20 OBV increments (oldest first) whose sum equals the 21-point OLS slope.
OBV_SLOPE_WEIGHTS: tuple[float, ...] = tuple(
    q * (OBV_WINDOW - q) / (OBV_WINDOW * (OBV_WINDOW * OBV_WINDOW - 1) / 6.0) for q in range(1, OBV_WINDOW)
)

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "rel_volume_20", FAMILY, 20, "ratio", "volume / 20-day mean volume (window ending at t)", 19, "volume"
    ),
    FeatureSpec(
        "obv_slope_21", FAMILY, OBV_WINDOW, "avg daily volumes per day",
        "OLS slope of OBV over 21 rows / 20-day mean volume", OBV_WINDOW - 1, "close,volume",
    ),
    FeatureSpec(
        "vwap_dist_20", FAMILY, 20, "fraction",
        "close / VWAP20 - 1, VWAP20 from typical price (H+L+C)/3 x volume over 20 rows", 19,
        "high,low,close,volume",
    ),
)


def volume_exprs() -> dict[str, pl.Expr]:
    """Features and helper columns (unmasked) over a frame from ``prepare_bars`` + base helpers."""
    v = pl.col("volume")
    c = pl.col("close")
    n = OBV_WINDOW - 1
    inc = (c - pl.col(PREV_CLOSE)).sign() * v
    return {
        "_vol_m20": roll_t("volume", "mean", 20),
        "rel_volume_20": v / pl.col("_vol_m20"),
        # polars' weighted rolling sum rejects nulls: fill them with 0, null windows that had one
        "_obv_inc": inc.fill_null(0.0),
        "_obv_inc_null": inc.is_null().cast(pl.Float64),
        "_obv_w": roll_t("_obv_inc", "sum", n, weights=list(OBV_SLOPE_WEIGHTS)),
        "_obv_nulls": roll_t("_obv_inc_null", "sum", n),
        "obv_slope_21": pl.when(pl.col("_obv_nulls") == 0.0).then(pl.col("_obv_w") / pl.col("_vol_m20")),
        "_tpv": (pl.col("high") + pl.col("low") + c) / 3.0 * v,
        "_tpv_s20": roll_t("_tpv", "sum", 20),
        "_vol_s20": roll_t("volume", "sum", 20),
        "vwap_dist_20": c / (pl.col("_tpv_s20") / pl.col("_vol_s20")) - 1.0,
    }


def volume_features(bars: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Volume features: ticker, date + one Float64 column per spec in :data:`SPECS`."""
    return select_features(prepare_bars(bars), SPECS, volume_exprs()).collect(engine=ENGINE)
