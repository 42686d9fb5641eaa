"""The stock book's Dagster assets on the synthetic market: prescreen -> funnel (with its blocking look-ahead
check) -> stock RL ensemble -> the book's evaluation per fold by lineage, the decision log, the walk-forward
track, report and analyst views, and the run without RL when the fold's policy file is corrupt."""
import dagster as dg
import numpy as np
import polars as pl
import pytest

from assets import features, folds, ingestion, prescreen, regimes, stock_book
from assets.keys import (
    EVAL_STOCK_BOOK,
    EVAL_STOCK_BOOK_WALK_FORWARD,
    MODELS_PRESCREEN,
    MODELS_STOCK_FUNNEL,
    MODELS_STOCK_RL,
    REGIMES_SECTOR_HMM,
    REGIMES_SECTOR_HMM_LIVE,
)
from infra.resources import (
    FeatureStoreResource,
    MarketDataResource,
    PolicyResource,
    PrescreenResource,
    RegimeResource,
    StockBookResource,
    WarehouseResource,
)
from ml.decision_engine import EngineConfig
from ml.folds import fold_from_frame
from ml.stock_book import BENCHMARKS, STOCK_VARIANTS, replay_decisions
from orchestration.definitions import storage_resources
from warehouse.catalog import artifact_records
from warehouse.tables import read_table

PREP = dg.load_assets_from_modules([ingestion, features, folds, regimes])
ALL = [*dg.load_assets_from_modules([ingestion, features, folds, regimes, prescreen, stock_book]),
       *dg.load_asset_checks_from_modules([stock_book])]
FOLD_STEPS = [MODELS_PRESCREEN, MODELS_STOCK_FUNNEL, MODELS_STOCK_RL, EVAL_STOCK_BOOK]
TOP_N = 8


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stock_book")
    resources = {
        **storage_resources(WarehouseResource(path=str(tmp / "wh.duckdb"), reports_dir=str(tmp / "reports"))),
        "market": MarketDataResource(source="synthetic", history_start="2008-01-01", history_end="2013-12-31",
                                     include_stocks=True),
        "features": FeatureStoreResource(lookahead_cutoffs=2),
        "regimes": RegimeResource(hmm_restarts=1),
        "prescreen": PrescreenResource(cv_splits=2, n_jobs=1),
        "policy": PolicyResource(),
        "stock_book": StockBookResource(top_n=TOP_N, ppo_total_steps=4096, offpolicy_total_steps=1024),
    }
    instance = dg.DagsterInstance.ephemeral()
    prep = dg.materialize(PREP, resources=resources, instance=instance,
                          selection=dg.AssetSelection.all() - dg.AssetSelection.assets(REGIMES_SECTOR_HMM,
                                                                                      REGIMES_SECTOR_HMM_LIVE))
    assert prep.success
    runs = {k: dg.materialize(ALL, resources=resources, instance=instance, partition_key=k, selection=FOLD_STEPS)
            for k in ("2012", "2013")}
    wf = dg.materialize(ALL, resources=resources, instance=instance, selection=[EVAL_STOCK_BOOK_WALK_FORWARD])
    return resources, instance, runs, wf


@pytest.mark.slow
def test_funnel_rl_and_book_run_by_lineage_on_the_fold_windows(book):
    resources, _, runs, _ = book
    assert all(r.success for r in runs.values())
    for key, run in runs.items():  # the funnel's look-ahead check ran on its own fold
        checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
        check = checks["stock_funnel_no_lookahead"]
        assert check.passed and check.metadata["fold"].value == key
    wh = resources["warehouse"].get()
    ref_folds = read_table(wh, "ref.folds")
    funnel = read_table(wh, "models.stock_funnel")
    assert set(funnel["fold"]) == {"2012", "2013"}
    for key in ("2012", "2013"):
        fold = fold_from_frame(ref_folds, key)
        f = funnel.filter(pl.col("fold") == key)
        # causal generations score the train window (g1, g2) and the final one the test window
        assert f.filter(pl.col("date") <= fold.train_end)["generation"].drop_nulls().unique().sort().to_list() == ["g1", "g2"]
        assert set(f.filter(pl.col("date") >= fold.test_start)["generation"].drop_nulls()) == {"final"}
        per_day = f.group_by("date").agg(pl.col("top_n").sum())
        assert per_day["top_n"].max() == TOP_N
        daily = read_table(wh, "eval.stock_book_daily").filter(pl.col("fold") == key)
        assert set(daily["strategy"]) == set(STOCK_VARIANTS) | set(BENCHMARKS)
        assert daily["date"].min() >= fold.test_start and daily["date"].max() <= fold.test_end
        assert daily.group_by("strategy").len()["len"].n_unique() == 1
        trades = read_table(wh, "eval.stock_book_trades").filter(pl.col("fold") == key)
        assert trades.height and trades["entry_date"].min() > fold.train_end
    assert set(artifact_records(wh, "stock_rl")["fold"]) == {"2012", "2013"}
    ens = read_table(wh, "models.stock_rl_ensemble")
    assert set(ens["member"]) == {"ppo", "sac", "td3"}
    assert np.allclose(ens.group_by("fold").agg(pl.col("weight").sum())["weight"], 1.0)
    metrics = read_table(wh, "eval.stock_book_metrics")
    assert metrics["rl_signal"].all() and set(metrics["cost_multiplier"]) == {1.0, 2.0, 3.0}
    cap = read_table(wh, "eval.stock_book_cap_search")
    assert (cap.group_by("fold").agg(pl.col("chosen").sum())["chosen"] == 1).all()


@pytest.mark.slow
def test_decision_log_is_in_the_warehouse_and_replays(book):
    resources, _, _, _ = book
    wh = resources["warehouse"].get()
    log = read_table(wh, "decisions.stock_daily")
    assert log.height and set(log["fold"]) == {"2012", "2013"}
    assert log["signal_rl"].drop_nulls().len() == log.height  # the RL ensemble's signal reached the engine
    replayed = replay_decisions(log, EngineConfig())
    assert np.allclose(replayed["replay_conviction"], replayed["conviction"], atol=1e-12)
    assert (replayed["replay_action"] == replayed["action"]).all()
    with wh.read() as con:
        n, folds_ = con.execute("SELECT count(*), count(DISTINCT fold) FROM analytics.stock_decisions").fetchone()
        exposure = con.execute("SELECT max(avg_invested) FROM analytics.stock_book_exposure").fetchone()[0]
        trades = con.execute("SELECT count(*) FROM analytics.stock_book_trades").fetchone()[0]
    assert n == log.height and folds_ == 2 and 0 < exposure <= 0.80 + 1e-9 and trades > 0


@pytest.mark.slow
def test_walk_forward_track_and_report(book):
    resources, _, _, wf = book
    assert wf.success
    wh = resources["warehouse"].get()
    track = read_table(wh, "eval.stock_book_walk_forward_daily")
    assert set(track["fold"]) == {"2012", "2013"}
    assert track.filter(pl.col("strategy") == "stock_book")["date"].is_sorted()
    attr = read_table(wh, "eval.stock_book_walk_forward_attribution")
    per_fold = read_table(wh, "eval.stock_book_attribution")
    assert attr["pnl"].sum() == pytest.approx(per_fold["pnl"].sum())
    html = (resources["warehouse"].report_dir() / "stock_book.html").read_text()
    assert "Survivorship" in html and "synthetic" in html.lower()


@pytest.mark.slow
def test_corrupt_stock_policy_runs_the_book_without_rl(book):
    resources, instance, _, _ = book
    wh = resources["warehouse"].get()
    rec = artifact_records(wh, "stock_rl", ["2013"]).row(0, named=True)
    (resources["warehouse"].artifact_root() / rec["path"]).write_bytes(b"not a policy")
    res = dg.materialize(ALL, resources=resources, instance=instance, partition_key="2013", selection=[EVAL_STOCK_BOOK])
    assert res.success
    logs = [e.message for e in instance.all_logs(res.run_id) if e.message]
    assert any("without the RL signal" in m for m in logs)
    m = read_table(wh, "eval.stock_book_metrics").filter(pl.col("fold") == "2013")
    assert not m["rl_signal"].any()
    log = read_table(wh, "decisions.stock_daily").filter(pl.col("fold") == "2013")
    assert log["signal_rl"].is_null().all() and (log["weight_rl"] == 0).all()
