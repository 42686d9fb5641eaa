"""Feature registry: one entry per output column of :func:`ml.features.compute_features`.

Columns of :func:`feature_registry`: ``name``, ``family``, ``window`` (look-back in trading days,
null if not windowed), ``unit``, ``description``, ``warmup_rows`` (leading rows that are null),
``warmup_basis`` (``ticker_rows`` or ``calendar_rows``), ``inputs`` (columns/series used).
The lead writes this frame to the DuckDB table ``features.registry``.
"""
from __future__ import annotations

import polars as pl

from ml.features import context, momentum, trend, volatility, volume
from ml.features._common import FeatureSpec, check_unique_names

FAMILIES: tuple[str, ...] = ("momentum", "volatility", "trend", "volume", "context")

REGISTRY_SCHEMA: dict[str, pl.DataType] = {
    "name": pl.Utf8,
    "family": pl.Utf8,
    "window": pl.Int64,
    "unit": pl.Utf8,
    "description": pl.Utf8,
    "warmup_rows": pl.Int64,
    "warmup_basis": pl.Utf8,
    "inputs": pl.Utf8,
}


def feature_specs(vix_lag_days: int = 0) -> tuple[FeatureSpec, ...]:
    """All specs in output-column order (warm-ups of VIX features include the lag)."""
    specs = (
        *momentum.SPECS,
        *volatility.SPECS,
        *trend.SPECS,
        *volume.SPECS,
        *context.context_specs(vix_lag_days),
    )
    check_unique_names(specs)
    return specs


FEATURE_SPECS: tuple[FeatureSpec, ...] = feature_specs()
FEATURE_NAMES: tuple[str, ...] = tuple(s.name for s in FEATURE_SPECS)


def get_spec(name: str, vix_lag_days: int = 0) -> FeatureSpec:
    for s in feature_specs(vix_lag_days):
        if s.name == name:
            return s
    raise KeyError(name)


def feature_registry(vix_lag_days: int = 0) -> pl.DataFrame:
    """The registry as a Polars frame (schema :data:`REGISTRY_SCHEMA`), one row per feature."""
    rows = [
        {
            "name": s.name,
            "family": s.family,
            "window": s.window,
            "unit": s.unit,
            "description": s.description,
            "warmup_rows": s.warmup,
            "warmup_basis": s.warmup_basis,
            "inputs": s.inputs,
        }
        for s in feature_specs(vix_lag_days)
    ]
    return pl.DataFrame(rows, schema=REGISTRY_SCHEMA)
