"""Automation conditions: derived assets refresh after an ingest run, only when the blocking checks passed;
training assets and the decision are never requested automatically."""
from datetime import date

import dagster as dg
import polars as pl
import pytest

from assets.keys import (
    DECISIONS_DAILY,
    FEATURES_DAILY,
    LABELS_FORWARD,
    MODELS_POLICY_PPO,
    REGIMES_SECTOR_HMM_LIVE,
    REGIMES_VIX,
)
from ml.data.csv_source import write_csv_dir
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from orchestration.definitions import definitions_with
from infra.resources import FeatureStoreResource, MarketDataResource, WarehouseResource

pytestmark = pytest.mark.slow


def _setup(tmp_path, corrupt: bool):
    universe = Universe(include_stocks=False, history_start=date(2019, 1, 1), history_end=date(2020, 12, 31))
    csv_dir = write_csv_dir(generate_market(universe, seed=2), tmp_path / "market")
    if corrupt:  # an open 30% above the day's high: the OHLC rule rejects the batch
        spy = csv_dir / "ohlcv" / "SPY.csv"
        frame = pl.read_csv(spy, try_parse_dates=True)
        frame.with_columns(pl.when(pl.col("date") == frame["date"][30]).then(pl.col("open") * 1.3)
                           .otherwise(pl.col("open")).alias("open")).write_csv(spy)
    local = definitions_with(
        warehouse=WarehouseResource(path=str(tmp_path / "wh.duckdb")),
        market=MarketDataResource(source="csv", data_dir=str(csv_dir), include_stocks=False,
                                  history_start="2019-01-01"),
        features=FeatureStoreResource(lookahead_cutoffs=2))
    instance = dg.DagsterInstance.ephemeral()
    first = dg.evaluate_automation_conditions(defs=local, instance=instance)  # the sensor's first tick
    assert first.total_requested == 0
    local.resolve_job_def("ingest").execute_in_process(instance=instance, raise_on_error=False)
    return local, instance, first


def test_ingest_run_triggers_the_derived_assets_only(tmp_path):
    local, instance, first = _setup(tmp_path, corrupt=False)
    after = dg.evaluate_automation_conditions(defs=local, instance=instance, cursor=first.cursor)
    for key in (FEATURES_DAILY, LABELS_FORWARD, REGIMES_VIX):
        assert after.get_num_requested(key) == 1, key
    # no fold has sector HMMs whose blocking look-ahead check passed yet: nothing to deploy live
    for key in (MODELS_POLICY_PPO, DECISIONS_DAILY, REGIMES_SECTOR_HMM_LIVE):
        assert after.get_num_requested(key) == 0, key
    again = dg.evaluate_automation_conditions(defs=local, instance=instance, cursor=after.cursor)
    assert again.total_requested == 0  # handled: not requested twice


def test_a_rejected_batch_triggers_no_refresh(tmp_path):
    # the audit rejects the whole batch before writing (write-audit-publish): nothing is materialized, so
    # nothing downstream is requested - neither what reads raw/bars nor what reads raw/index_bars
    local, instance, first = _setup(tmp_path, corrupt=True)
    after = dg.evaluate_automation_conditions(defs=local, instance=instance, cursor=first.cursor)
    for key in (FEATURES_DAILY, LABELS_FORWARD, REGIMES_SECTOR_HMM_LIVE, REGIMES_VIX):
        assert after.get_num_requested(key) == 0, key
