"""The research group: the thesis reproduction as Dagster assets (synthetic data, a shortened protocol)."""
import dagster as dg
import polars as pl
import pytest

from assets import research
from infra.resources import FeatureStoreResource, MarketDataResource, PolicyResource, WarehouseResource
from orchestration.definitions import storage_resources
from warehouse.db import table_exists
from warehouse.tables import read_table


@pytest.fixture()
def resources(tmp_path):
    return {
        **storage_resources(WarehouseResource(path=str(tmp_path / "wh.duckdb"), reports_dir=str(tmp_path / "rep"))),
        "market": MarketDataResource(source="synthetic", include_stocks=False),
        "features": FeatureStoreResource(),
        "policy": PolicyResource(qlearning_epochs_scale=0.02),
    }


def test_thesis_reproduction_writes_tables_and_report(resources):
    config = {"ops": {"research__thesis_reproduction": {"config": {
        "train_start": "2006-01-03", "train_end": "2013-12-31", "test_start": "2014-01-01", "test_end": "2018-12-31",
        "mc_paths": 500}}}}
    result = dg.materialize(dg.load_assets_from_modules([research]), resources=resources, run_config=config)
    assert result.success
    wh = resources["warehouse"].get()
    table = read_table(wh, "research.thesis_reproduction")
    assert table.height == 32 + 7  # members + spy, best, stack, E.L. (each with / without the switcher) and set(table["source"]) == {"synthetic"}
    assert read_table(wh, "research.thesis_bars")["date"].min().year == 2005  # the whole synthetic history
    assert read_table(wh, "research.thesis_monte_carlo").height == 3 * 252
    daily = read_table(wh, "research.thesis_daily").filter(pl.col("strategy") == "spy")
    assert daily["date"].min().year == 2014 and daily["date"].max().year == 2018
    meta = result.asset_materializations_for_node("research__thesis_reproduction")[0].metadata
    html = open(meta["report"].value).read()
    assert "SYNTHETIC DATA" in html and "data:image/png;base64" in html and "https://" not in html
    assert meta["best"].value in set(table["strategy"])


def test_thesis_reproduction_skips_when_the_history_is_too_short(resources):
    # the default protocol trains from 1995; the synthetic market starts in 2005: a warning, nothing written
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(dg.load_assets_from_modules([research]), resources=resources, instance=instance)
    assert result.success
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("thesis reproduction skipped" in m and "1995-10-16" in m for m in logs)
    with resources["warehouse"].get().read() as con:
        assert not table_exists(con, "research.thesis_reproduction")
