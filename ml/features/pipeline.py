"""All features in one pass: :func:`compute_features`.

Output: one row per (ticker, date) of the input bars, sorted by ticker then date, columns
``ticker``, ``date`` and one Float64 column per registry feature (``FEATURE_NAMES`` order).
Timing convention: a feature dated t uses only data with timestamp <= the close of t (VIX: see
``ml.features.context``; the default ``vix_lag_days=0`` uses the 16:15 ET VIX close of t).
Warm-up rows are null (never back-filled); non-finite values (e.g. zero-volume divisions) are null.
"""
from __future__ import annotations

import polars as pl

from ml.features import context, momentum, trend, volatility, volume
from ml.features._common import ENGINE, KEYS, merge_exprs, prepare_bars, select_features
from ml.features.config import FeatureConfig
from ml.features.registry import feature_specs


def compute_features(
    bars: pl.DataFrame | pl.LazyFrame,
    index_bars: pl.DataFrame | None = None,
    config: FeatureConfig | None = None,
) -> pl.DataFrame:
    """Every registry feature for every (ticker, date) of ``bars`` (canonical BARS_SCHEMA).

    ``index_bars``: INDEX_BARS_SCHEMA frame with VIX and VIX3M (None -> VIX features null).
    """
    cfg = config or FeatureConfig()
    specs = feature_specs(cfg.vix_lag_days)
    lf = prepare_bars(bars, market_ticker=cfg.market_ticker)
    exprs = merge_exprs(
        momentum.momentum_exprs(),
        volatility.volatility_exprs(),
        trend.trend_exprs(),
        volume.volume_exprs(),
        context.market_exprs(),
    )
    per_ticker = [s for s in specs if s.name in exprs]
    feats = select_features(lf, per_ticker, exprs).collect(engine=ENGINE)
    dates = feats.select("date")
    vix = context.vix_features(index_bars, dates.get_column("date"), cfg)
    # join only the date column and stack the result: avoids gathering every feature column
    vix_rows = dates.join(vix, on="date", how="left", maintain_order="left").drop("date")
    return feats.hstack(vix_rows).select(*KEYS, *[s.name for s in specs])
