"""Dagster feature group: features.daily / registry / labels land in DuckDB; the look-ahead check blocks leaks."""
import dagster as dg
import polars as pl
import pytest

from assets import features as feature_assets
from assets import ingestion
from assets.keys import FEATURES_DAILY
from ml.features import FEATURE_NAMES, compute_features
from infra.resources import FeatureStoreResource, MarketDataResource, WarehouseResource
from orchestration.definitions import storage_resources
from warehouse.tables import read_table

ASSETS = dg.load_assets_from_modules([ingestion, feature_assets])
CHECKS = dg.load_asset_checks_from_modules([feature_assets])


@pytest.fixture
def resources(tmp_path):
    return {
        **storage_resources(WarehouseResource(path=str(tmp_path / "wh.duckdb"))),
        "market": MarketDataResource(source="synthetic", history_start="2016-01-01", include_stocks=False,
                                     sector_etfs=["XLK", "XLE"]),
        "features": FeatureStoreResource(lookahead_cutoffs=4),
    }


@pytest.mark.slow
def test_feature_group_materializes_and_passes_lookahead(resources):
    result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "features_no_lookahead"]
    assert check.passed and "PASSED" in check.metadata["report"].value
    wh = resources["warehouse"].get()
    daily = read_table(wh, "features.daily")
    assert set(FEATURE_NAMES) <= set(daily.columns) and len(FEATURE_NAMES) >= 40
    assert set(daily["source"]) == {"synthetic"}
    assert daily.select(pl.struct("ticker", "date").is_duplicated().any()).item() is False
    registry = read_table(wh, "features.registry")
    assert set(registry["name"]) == set(FEATURE_NAMES) and registry["description"].str.len_chars().min() > 10
    labels = read_table(wh, "labels.forward")
    assert {"fwd_ret_5d", "buy_5d", "sell_5d", "fwd_ret_21d"} <= set(labels.columns)
    meta = result.asset_materializations_for_node("features__daily")[0].metadata
    assert meta["feature_count"].value == len(FEATURE_NAMES)
    assert meta["max_null_share_after_warmup"].value < 0.05
    # the stored values are what the pure function computes
    spy = daily.filter(pl.col("ticker") == "SPY").sort("date")
    assert spy["rsi_14"].drop_nulls().len() > 100


@pytest.mark.slow
def test_planted_leak_fails_the_blocking_check(resources, monkeypatch):
    def leaky(bars, index_bars, config=None):
        out = compute_features(bars, index_bars, config)
        return out.with_columns(pl.col("ret_1d").shift(-1).over("ticker").alias("ret_1d"))

    monkeypatch.setattr(feature_assets, "compute_features", leaky)
    result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "features_no_lookahead"]
    assert not check.passed
    assert check.metadata["failed_features"].value == ["ret_1d"]
    assert check.asset_key == FEATURES_DAILY
