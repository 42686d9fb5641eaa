"""Trend features (per ticker). A feature dated t uses only bars dated <= t.

* ``close_to_sma_n`` = close / SMA_n(close) - 1 (fraction).
* ``sma_cross_50_200`` = +1 when SMA50 > SMA200 else -1; ``days_since_cross_50_200`` = rows since
  the state last changed (0 on the day of a cross). Before the first observed cross it counts
  from the first row where the state is defined, i.e. it is a lower bound there.
* ADX (Wilder, 14): up = H_t - H_{t-1}, down = L_{t-1} - L_t; +DM = up if up > down and up > 0
  else 0, -DM symmetric (both null on row 0). ATR = Wilder EMA of TR seeded with TR_0 = H_0 - L_0;
  +DI = 100 * EMA(+DM) / ATR, -DI = 100 * EMA(-DM) / ATR (EMAs alpha=1/14, seeded on row 1);
  DX = 100 * |+DI - -DI| / (+DI + -DI) (0 when both are 0); ADX = EMA(alpha=1/14) of DX from row 1.
"""
from __future__ import annotations

import polars as pl

from ml.features._common import (
    ENGINE,
    ROW,
    TRUE_RANGE,
    FeatureSpec,
    ewm_t,
    ewm_warmup,
    lag,
    roll_t,
    prepare_bars,
    select_features,
    wilder_alpha,
)

FAMILY = "trend"
SMA_WINDOWS: tuple[int, ...] = (20, 50, 200)
ADX_PERIOD = 14
_W = ewm_warmup(wilder_alpha(ADX_PERIOD))
_DI_WARMUP = 1 + _W
_ADX_WARMUP = 1 + 2 * _W

SPECS: tuple[FeatureSpec, ...] = (
    *[
        FeatureSpec(f"close_to_sma_{n}", FAMILY, n, "fraction", f"close / SMA{n}(close) - 1", n - 1)
        for n in SMA_WINDOWS
    ],
    FeatureSpec("sma_cross_50_200", FAMILY, 200, "state +1/-1", "+1 if SMA50 > SMA200 else -1", 199),
    FeatureSpec(
        "days_since_cross_50_200", FAMILY, 200, "trading days",
        "rows since sma_cross_50_200 last changed (lower bound before the first observed cross)", 199,
    ),
    FeatureSpec(
        "adx_14", FAMILY, ADX_PERIOD, "index 0..100", "Wilder ADX(14): EMA(alpha=1/14) of DX",
        _ADX_WARMUP, "high,low,close",
    ),
    FeatureSpec(
        "plus_di_14", FAMILY, ADX_PERIOD, "index 0..100", "Wilder +DI(14) = 100 * EMA(+DM) / ATR14",
        _DI_WARMUP, "high,low,close",
    ),
    FeatureSpec(
        "minus_di_14", FAMILY, ADX_PERIOD, "index 0..100", "Wilder -DI(14) = 100 * EMA(-DM) / ATR14",
        _DI_WARMUP, "high,low,close",
    ),
)


def trend_exprs() -> dict[str, pl.Expr]:
    """Features and helper columns (unmasked) over a frame from ``prepare_bars`` + base helpers."""
    c = pl.col("close")
    out: dict[str, pl.Expr] = {}
    for n in SMA_WINDOWS:
        out[f"_sma{n}"] = roll_t("close", "mean", n)
        out[f"close_to_sma_{n}"] = c / pl.col(f"_sma{n}") - 1.0
    s50, s200 = pl.col("_sma50"), pl.col("_sma200")
    out["sma_cross_50_200"] = (
        pl.when(s50.is_null() | s200.is_null()).then(None).when(s50 > s200).then(1.0).otherwise(-1.0)
    )
    state = pl.col("sma_cross_50_200")
    out["_cross_start"] = pl.when(state.is_not_null() & state.ne_missing(lag("sma_cross_50_200", 1))).then(
        pl.col(ROW)
    )
    out["_cross_start_ff"] = pl.col("_cross_start").forward_fill().over("ticker")
    out["days_since_cross_50_200"] = pl.col(ROW) - pl.col("_cross_start_ff")

    h, l = pl.col("high"), pl.col("low")
    out["_up"] = h - lag("high", 1)
    out["_down"] = lag("low", 1) - l
    up, down = pl.col("_up"), pl.col("_down")
    both = up.is_not_null() & down.is_not_null()
    out["_pdm"] = pl.when((up > down) & (up > 0.0)).then(up).when(both).then(0.0)
    out["_mdm"] = pl.when((down > up) & (down > 0.0)).then(down).when(both).then(0.0)
    a = wilder_alpha(ADX_PERIOD)
    out["_atr14"] = ewm_t(TRUE_RANGE, a)
    out["_pdm_s"] = ewm_t("_pdm", a)
    out["_mdm_s"] = ewm_t("_mdm", a)
    out["plus_di_14"] = 100.0 * pl.col("_pdm_s") / pl.col("_atr14")
    out["minus_di_14"] = 100.0 * pl.col("_mdm_s") / pl.col("_atr14")
    pdi, mdi = pl.col("plus_di_14"), pl.col("minus_di_14")
    tot = pdi + mdi
    out["_dx"] = pl.when(tot > 0.0).then(100.0 * (pdi - mdi).abs() / tot).when(tot.is_not_null()).then(0.0)
    out["adx_14"] = ewm_t("_dx", a)
    return out


def trend_features(bars: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Trend features: ticker, date + one Float64 column per spec in :data:`SPECS`."""
    return select_features(prepare_bars(bars), SPECS, trend_exprs()).collect(engine=ENGINE)
