"""Volatility features (per ticker).

Daily log returns r_t = ln(close_t / close_{t-1}); "annualized" means x sqrt(252). Standard
deviations of returns use ddof=1; Bollinger bands use the population std (ddof=0) as in
Bollinger's definition. A feature dated t uses only bars dated <= t.

* True range TR_t = max(H-L, |H-C_{t-1}|, |L-C_{t-1}|), TR_0 = H_0 - L_0.
* ``atr_14``: Wilder ATR = recursive EMA of TR with alpha=1/14 seeded with TR_0 (price units;
  levels of adjusted prices depend on the adjustment reference date, prefer ``atr_pct_14``).
* Range estimators over 21 rows, annualized: Parkinson sigma^2 = mean(ln(H/L)^2) / (4 ln 2);
  Garman-Klass sigma^2 = mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2), clipped at 0.
"""
from __future__ import annotations

import math

import polars as pl

from ml.features._common import (
    ENGINE,
    ANNUALIZATION,
    LOG_RET,
    PREV_CLOSE,
    SQRT_252,
    TRUE_RANGE,
    FeatureSpec,
    ewm_t,
    ewm_warmup,
    roll_t,
    prepare_bars,
    select_features,
    wilder_alpha,
)

FAMILY = "volatility"
ATR_PERIOD = 14
BB_WINDOW, BB_K = 20, 2.0
RANGE_WINDOW = 21
_ATR_WARMUP = ewm_warmup(wilder_alpha(ATR_PERIOD))

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("rv_21d", FAMILY, 21, "daily log-return std", "std (ddof=1) of the last 21 daily log returns", 21),
    FeatureSpec("rv_63d", FAMILY, 63, "daily log-return std", "std (ddof=1) of the last 63 daily log returns", 63),
    FeatureSpec("rv_21d_ann", FAMILY, 21, "annualized vol", "rv_21d * sqrt(252)", 21),
    FeatureSpec(
        "rv_21d_simple", FAMILY, 21, "daily simple-return std",
        "std (ddof=1) of the last 21 daily simple returns close_t / close_(t-1) - 1, not annualised (the seed "
        "article's vol_21d)", 21,
    ),
    FeatureSpec("rv_63d_ann", FAMILY, 63, "annualized vol", "rv_63d * sqrt(252)", 63),
    FeatureSpec(
        "atr_14", FAMILY, ATR_PERIOD, "price", "Wilder ATR(14): EMA(alpha=1/14) of the true range",
        _ATR_WARMUP, "high,low,close",
    ),
    FeatureSpec(
        "atr_pct_14", FAMILY, ATR_PERIOD, "fraction of close", "atr_14 / close_t", _ATR_WARMUP, "high,low,close"
    ),
    FeatureSpec(
        "bb_pctb_20", FAMILY, BB_WINDOW, "fraction of band width",
        "Bollinger %B (20, 2): (close - lower) / (upper - lower); 0 = lower band, 1 = upper band",
        BB_WINDOW - 1,
    ),
    FeatureSpec(
        "bb_width_20", FAMILY, BB_WINDOW, "fraction of SMA20",
        "Bollinger width (20, 2): (upper - lower) / SMA20 = 4 * std20 / SMA20", BB_WINDOW - 1,
    ),
    FeatureSpec(
        "vol_of_vol_21", FAMILY, 21, "annualized vol",
        "std (ddof=1) over 21 rows of rv_21d_ann", 21 + 20,
    ),
    FeatureSpec(
        "parkinson_vol_21", FAMILY, RANGE_WINDOW, "annualized vol",
        "Parkinson high-low range volatility over 21 rows, annualized", RANGE_WINDOW - 1, "high,low",
    ),
    FeatureSpec(
        "gk_vol_21", FAMILY, RANGE_WINDOW, "annualized vol",
        "Garman-Klass OHLC range volatility over 21 rows, annualized", RANGE_WINDOW - 1, "open,high,low,close",
    ),
)


def volatility_exprs() -> dict[str, pl.Expr]:
    """Features and helper columns (unmasked) over a frame from ``prepare_bars`` + base helpers."""
    c = pl.col("close")
    out: dict[str, pl.Expr] = {}
    for w in (21, 63):
        out[f"rv_{w}d"] = roll_t(LOG_RET, "std", w)
        out[f"rv_{w}d_ann"] = pl.col(f"rv_{w}d") * SQRT_252
    out["_simple_ret"] = c / pl.col(PREV_CLOSE) - 1.0
    out["rv_21d_simple"] = roll_t("_simple_ret", "std", 21)
    out["_atr14"] = ewm_t(TRUE_RANGE, wilder_alpha(ATR_PERIOD))
    out["atr_14"] = pl.col("_atr14")
    out["atr_pct_14"] = pl.col("_atr14") / c
    out["_sma20"] = roll_t("close", "mean", BB_WINDOW)
    out["_sd20"] = roll_t("close", "std", BB_WINDOW, ddof=0)
    m, sd = pl.col("_sma20"), pl.col("_sd20")
    out["bb_pctb_20"] = (c - (m - BB_K * sd)) / (2.0 * BB_K * sd)
    out["bb_width_20"] = 2.0 * BB_K * sd / m
    out["vol_of_vol_21"] = roll_t("rv_21d_ann", "std", 21)
    out["_hl2"] = (pl.col("high") / pl.col("low")).log() ** 2
    out["_co2"] = (c / pl.col("open")).log() ** 2
    out["_gk"] = 0.5 * pl.col("_hl2") - (2.0 * math.log(2.0) - 1.0) * pl.col("_co2")
    out["_hl2_m"] = roll_t("_hl2", "mean", RANGE_WINDOW)
    out["_gk_m"] = roll_t("_gk", "mean", RANGE_WINDOW)
    out["parkinson_vol_21"] = (pl.col("_hl2_m") * (ANNUALIZATION / (4.0 * math.log(2.0)))).sqrt()
    out["gk_vol_21"] = (pl.col("_gk_m").clip(lower_bound=0.0) * ANNUALIZATION).sqrt()
    return out


def volatility_features(bars: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Volatility features: ticker, date + one Float64 column per spec in :data:`SPECS`."""
    return select_features(prepare_bars(bars), SPECS, volatility_exprs()).collect(engine=ENGINE)
