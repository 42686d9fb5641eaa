"""Momentum features (per ticker, from the adjusted ``close``).

Returns are **natural-log** returns ``ln(close_t / close_{t-h})`` (additive over time; ``roc_10``
is the one simple return). A feature dated t uses only prices dated <= t (``ret_intraday`` also reads the
open of t).
EMAs are causal recursive EMAs (``ewm_mean(adjust=False)``) seeded with the first observation;
their warm-up lasts until the seed weighs <= 5 % (see ``_common.ewm_warmup``).

* ``rsi_14``: Wilder RSI, 0..100. Gains/losses of ``close - close_{t-1}`` smoothed with alpha=1/14
  (seeded on row 1); RSI = 100 * G / (G + L); null when G + L == 0.
* ``macd_*``: MACD in percentage-price-oscillator form so it is comparable across tickers and
  invariant to the adjustment reference date: line = EMA12/EMA26 - 1 (fraction), signal = EMA9 of
  the line, hist = line - signal.
"""
from __future__ import annotations

import polars as pl

from ml.features._common import (
    ENGINE,
    LOG_CLOSE,
    PREV_CLOSE,
    FeatureSpec,
    ewm_t,
    ewm_warmup,
    lag,
    prepare_bars,
    select_features,
    span_alpha,
    wilder_alpha,
)

FAMILY = "momentum"
RETURN_HORIZONS: tuple[int, ...] = (1, 5, 21, 63, 126, 252)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9

_RSI_WARMUP = 1 + ewm_warmup(wilder_alpha(RSI_PERIOD))
_MACD_LINE_WARMUP = max(ewm_warmup(span_alpha(MACD_FAST)), ewm_warmup(span_alpha(MACD_SLOW)))
_MACD_SIGNAL_WARMUP = _MACD_LINE_WARMUP + ewm_warmup(span_alpha(MACD_SIGNAL))

SPECS: tuple[FeatureSpec, ...] = (
    *[
        FeatureSpec(f"ret_{h}d", FAMILY, h, "log return", f"ln(close_t / close_(t-{h})), {h}-day log return", h)
        for h in RETURN_HORIZONS
    ],
    FeatureSpec(
        "ret_intraday", FAMILY, None, "log return",
        "ln(close_t / open_t), the session's open-to-close log return (ret_1d - ret_intraday = the overnight "
        "gap); P&L of orders that fill at the open", 0, inputs="open,close",
    ),
    FeatureSpec("roc_10", FAMILY, 10, "fraction", "rate of change: close_t / close_(t-10) - 1 (simple return)", 10),
    FeatureSpec(
        "mom_12_1", FAMILY, 252, "log return",
        "12-1 momentum: ln(close_(t-21) / close_(t-252)), skips the most recent month", 252,
    ),
    FeatureSpec(
        "rsi_14", FAMILY, RSI_PERIOD, "index 0..100",
        "Wilder RSI(14): 100*G/(G+L), G/L = Wilder-smoothed (alpha=1/14) gains/losses of daily close changes",
        _RSI_WARMUP,
    ),
    FeatureSpec(
        "macd_line", FAMILY, MACD_SLOW, "fraction of EMA26",
        "MACD line in PPO form: EMA12(close)/EMA26(close) - 1", _MACD_LINE_WARMUP,
    ),
    FeatureSpec(
        "macd_signal", FAMILY, MACD_SIGNAL, "fraction of EMA26",
        "MACD signal: EMA9 of macd_line", _MACD_SIGNAL_WARMUP,
    ),
    FeatureSpec(
        "macd_hist", FAMILY, MACD_SIGNAL, "fraction of EMA26",
        "MACD histogram: macd_line - macd_signal", _MACD_SIGNAL_WARMUP,
    ),
)


def momentum_exprs() -> dict[str, pl.Expr]:
    """Features and helper columns (unmasked) over a frame from ``prepare_bars`` + base helpers."""
    c = pl.col("close")
    lc = pl.col(LOG_CLOSE)
    out: dict[str, pl.Expr] = {f"ret_{h}d": lc - lag(LOG_CLOSE, h) for h in RETURN_HORIZONS}
    out["ret_intraday"] = lc - pl.col("open").log()
    out["roc_10"] = c / lag("close", 10) - 1.0
    out["mom_12_1"] = lag(LOG_CLOSE, 21) - lag(LOG_CLOSE, 252)

    d = c - pl.col(PREV_CLOSE)
    a = wilder_alpha(RSI_PERIOD)
    out["_gain"] = d.clip(lower_bound=0.0)
    out["_loss"] = (-d).clip(lower_bound=0.0)
    out["_rsi_g"] = ewm_t("_gain", a)
    out["_rsi_l"] = ewm_t("_loss", a)
    out["rsi_14"] = 100.0 * pl.col("_rsi_g") / (pl.col("_rsi_g") + pl.col("_rsi_l"))

    out["_ema12"] = ewm_t("close", span_alpha(MACD_FAST))
    out["_ema26"] = ewm_t("close", span_alpha(MACD_SLOW))
    out["macd_line"] = pl.col("_ema12") / pl.col("_ema26") - 1.0
    out["macd_signal"] = ewm_t("macd_line", span_alpha(MACD_SIGNAL))
    out["macd_hist"] = pl.col("macd_line") - pl.col("macd_signal")
    return out


def momentum_features(bars: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Momentum features: ticker, date + one Float64 column per spec in :data:`SPECS`."""
    return select_features(prepare_bars(bars), SPECS, momentum_exprs()).collect(engine=ENGINE)
