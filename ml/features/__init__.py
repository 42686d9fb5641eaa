"""Feature store (pure Polars): per-ticker technical features plus market context.

Timing convention: a feature dated t uses only data with timestamp <= the close of t; warm-up
rows are null. Families (each callable on its own, returning ticker, date + features):
:func:`momentum_features`, :func:`volatility_features`, :func:`trend_features`,
:func:`volume_features`, :func:`context_features`. :func:`compute_features` computes them all;
:func:`feature_registry` documents every column.
"""
from ml.features.config import FeatureConfig
from ml.features.context import context_features, vix_features
from ml.features.momentum import momentum_features
from ml.features.pipeline import compute_features
from ml.features.registry import (
    FEATURE_NAMES,
    FEATURE_SPECS,
    FeatureSpec,
    feature_registry,
    feature_specs,
    get_spec,
)
from ml.features.trend import trend_features
from ml.features.volatility import volatility_features
from ml.features.volume import volume_features

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SPECS",
    "FeatureConfig",
    "FeatureSpec",
    "compute_features",
    "context_features",
    "feature_registry",
    "feature_specs",
    "get_spec",
    "momentum_features",
    "trend_features",
    "vix_features",
    "volatility_features",
    "volume_features",
]
