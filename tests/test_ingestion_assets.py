"""Dagster: the ingestion group materializes on synthetic data; a failing blocking check stops downstream."""
import dagster as dg
import polars as pl
import pytest

from assets import ingestion, ingestion_checks
from assets.keys import RAW_BARS, RAW_INDEX_BARS, REF_TRADING_CALENDAR
from orchestration.definitions import defs, storage_resources
from infra.resources import MarketDataResource, WarehouseResource
from warehouse import Warehouse
from warehouse import ingest as wi

ASSETS = dg.load_assets_from_modules([ingestion])
CHECKS = dg.load_asset_checks_from_modules([ingestion_checks])


def _resources(tmp_path, **market):
    wh = WarehouseResource(path=str(tmp_path / "wh" / "regimeflow.duckdb"))
    return {**storage_resources(wh), "market": MarketDataResource(**market)}, wh.get()


def test_definitions_load():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"raw/bars", "raw/index_bars", "ref/sectors", "ref/trading_calendar"} <= keys
    assert {"prepare", "fold", "ingest"} <= {j.name for j in repo.get_all_jobs()}
    checks = {c.name for c in repo.asset_graph.asset_check_keys}
    assert {"bars_high_ge_open_close", "bars_no_long_gaps", "index_vix_range"} <= checks


@pytest.mark.slow
def test_materialize_ingestion_group_on_synthetic(tmp_path):
    resources, wh = _resources(tmp_path, source="synthetic", history_start="2015-01-01", synthetic_seed=4)
    result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) >= 20 and all(e.passed for e in evaluations)
    mats = {m.asset_key: m for m in result.get_asset_materialization_events()}
    assert REF_TRADING_CALENDAR in mats
    meta = result.asset_materializations_for_node("market_data")[0].metadata
    assert meta["source"].value == "synthetic" and "SYNTHETIC" in meta["WARNING"].value
    assert "SPY" in meta["date_range_per_ticker"].value
    counts = wi.table_counts(wh)
    assert counts["raw.bars"] == meta["dagster/row_count"].value > 0
    assert counts["ref.trading_calendar"] > 2000
    with wh.read() as con:
        assert {r[0] for r in con.execute("SELECT DISTINCT source FROM raw.bars").fetchall()} == {"synthetic"}
    # re-materializing changes nothing
    again = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert again.success and wi.table_counts(wh)["raw.bars"] == counts["raw.bars"]


@pytest.mark.slow
def test_a_rule_violation_is_rejected_before_anything_is_written(tmp_path, csv_dir, small_universe):
    """Write-audit-publish: the error rules run on the staged batch, so a bad bar never reaches raw.* (the
    blocking checks stay as the second line on what is stored)."""
    spy = csv_dir / "ohlcv" / "SPY.csv"
    frame = pl.read_csv(spy, try_parse_dates=True)
    bad_day = frame["date"][50]
    frame = frame.with_columns(
        pl.when(pl.col("date") == bad_day).then(pl.col("open") * 1.2).otherwise(pl.col("open")).alias("open")
    )
    frame.write_csv(spy)
    resources, wh = _resources(
        tmp_path, source="csv", data_dir=str(csv_dir), sector_etfs=small_universe.sector_etfs,
        stocks=small_universe.stocks, history_start="2019-01-01", history_end="2020-12-31",
    )
    result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "bars_high_ge_open_close" in failure and f"SPY {bad_day}" in failure and "nothing written" in failure
    assert f"{csv_dir}/ohlcv/SPY.csv" in failure  # the file to fix
    assert not result.get_asset_materialization_events()  # raw.* untouched, downstream not run
    with wh.read() as con:
        assert con.execute("SELECT count(*) FROM raw.bars").fetchall()[0][0] == 0
        assert con.execute("SELECT status FROM raw.ingest_log").fetchall() == [("rejected",)]


@pytest.mark.slow
def test_malformed_csv_rejects_batch_and_keeps_previous_data(tmp_path, csv_dir, small_universe):
    resources, wh = _resources(
        tmp_path, source="csv", data_dir=str(csv_dir), sector_etfs=small_universe.sector_etfs,
        stocks=small_universe.stocks, history_start="2019-01-01", history_end="2020-12-31",
    )
    assert dg.materialize(ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral()).success
    before = wi.read_bars(wh)
    (csv_dir / "ohlcv" / "QQQ.csv").write_text("date,open,high,low,close,adj_close,volume\n2021-01-04,1,2,x,1,1,5\n")
    result = dg.materialize(ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "QQQ.csv:2" in failure.description and "non-numeric or missing low" in failure.description
    assert wi.read_bars(wh).equals(before)
    with Warehouse(wh.path).read() as con:
        assert con.execute("SELECT count(*) FROM raw.ingest_log WHERE status='rejected'").fetchall()[0][0] == 1


@pytest.mark.slow
def test_the_blocking_check_still_guards_what_is_stored(tmp_path, csv_dir, small_universe):
    """The second line: a bad row already in raw.bars (written before the audit existed, or by hand) fails
    the blocking check, naming the ticker and date."""
    resources, wh = _resources(
        tmp_path, source="csv", data_dir=str(csv_dir), sector_etfs=small_universe.sector_etfs,
        stocks=small_universe.stocks, history_start="2019-01-01", history_end="2020-12-31",
    )
    assert dg.materialize(ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral()).success
    with wh.write() as con:
        con.execute("UPDATE raw.bars SET close = -1 WHERE ticker = 'SPY' AND date = DATE '2019-03-01'")
    result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            selection=dg.AssetSelection.checks_for_assets(RAW_BARS, RAW_INDEX_BARS),
                            raise_on_error=False)
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert "bars_prices_positive" in failed
    example = failed["bars_prices_positive"].metadata["examples"].value[0]
    assert example["ticker"] == "SPY" and str(example["date"]) == "2019-03-01"
