"""The sector book's Dagster assets on the synthetic market: pairs, the QR-DQN pair policy and the book's
evaluation per fold by lineage, the walk-forward track, analyst views, and the z-score fallback when the
fold's QR-DQN file is corrupt."""
from datetime import date

import dagster as dg
import polars as pl
import pytest

from assets import features, folds, ingestion, regimes, sector_book
from assets.keys import (
    EVAL_SECTOR_BOOK,
    EVAL_SECTOR_BOOK_WALK_FORWARD,
    MODELS_PAIRS_QRDQN,
    MODELS_SECTOR_PAIRS,
    REGIMES_SECTOR_HMM,
    REGIMES_SECTOR_HMM_LIVE,
)
from infra.resources import (
    FeatureStoreResource,
    MarketDataResource,
    RegimeResource,
    SectorBookResource,
    WarehouseResource,
)
from ml.folds import fold_from_frame
from ml.sector_book import BOOK_VARIANTS, COMPARISONS
from orchestration.definitions import storage_resources
from warehouse.catalog import artifact_records
from warehouse.tables import read_table

PREP = dg.load_assets_from_modules([ingestion, features, folds, regimes])
ALL = dg.load_assets_from_modules([ingestion, features, folds, regimes, sector_book])
FOLD_STEPS = [REGIMES_SECTOR_HMM, MODELS_SECTOR_PAIRS, MODELS_PAIRS_QRDQN, EVAL_SECTOR_BOOK]


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sector_book")
    resources = {
        **storage_resources(WarehouseResource(path=str(tmp / "wh.duckdb"), reports_dir=str(tmp / "reports"))),
        "market": MarketDataResource(source="synthetic", history_start="2009-01-01", history_end="2013-12-31",
                                     include_stocks=True),
        "features": FeatureStoreResource(lookahead_cutoffs=2),
        "regimes": RegimeResource(hmm_restarts=1),
        # synthetic sectors have 3 stocks each; their random walks rarely cointegrate at 5 %
        "sector_book": SectorBookResource(min_group_size=3, pairs_pvalue_max=0.5, pairs_lookback=252,
                                          qrdqn_total_steps=6144),
    }
    instance = dg.DagsterInstance.ephemeral()
    prep = dg.materialize(PREP, resources=resources, instance=instance,
                          selection=dg.AssetSelection.all() - dg.AssetSelection.assets(REGIMES_SECTOR_HMM,
                                                                                      REGIMES_SECTOR_HMM_LIVE))
    assert prep.success
    runs = {k: dg.materialize(ALL, resources=resources, instance=instance, partition_key=k, selection=FOLD_STEPS)
            for k in ("2012", "2013")}
    wf = dg.materialize(ALL, resources=resources, instance=instance, selection=[EVAL_SECTOR_BOOK_WALK_FORWARD])
    return resources, instance, runs, wf


@pytest.mark.slow
def test_fold_assets_run_by_lineage_on_the_fold_windows(book):
    resources, _, runs, _ = book
    assert all(r.success for r in runs.values())
    wh = resources["warehouse"].get()
    ref_folds = read_table(wh, "ref.folds")
    sectors = read_table(wh, "ref.sectors")
    pairs = read_table(wh, "models.sector_pairs")
    assert pairs.height and set(pairs["fold"]) == {"2012", "2013"}
    sector_of = dict(sectors.select("ticker", "gics_sector").iter_rows())
    assert all(sector_of[a] == sector_of[b] == g for g, a, b in pairs.select("group", "ticker_a", "ticker_b").iter_rows())
    assert (pairs["pvalue"] <= 0.5).all() and (pairs.group_by("fold", "group").len()["len"] <= 5).all()
    assert set(artifact_records(wh, "pairs_qrdqn")["fold"]) == {"2012", "2013"}
    daily = read_table(wh, "eval.sector_book_daily")
    assert set(daily["strategy"]) == set(BOOK_VARIANTS) | set(COMPARISONS)
    for key in ("2012", "2013"):
        fold = fold_from_frame(ref_folds, key)
        d = daily.filter(pl.col("fold") == key)
        assert d["date"].min() >= fold.test_start and d["date"].max() <= fold.test_end
        assert d.group_by("strategy").len()["len"].n_unique() == 1  # every strategy on the same days
        trades = read_table(wh, "eval.sector_book_trades").filter(pl.col("fold") == key)
        assert trades.height and trades["entry_date"].min() > fold.train_end  # decided from the test window's eve
    metrics = read_table(wh, "eval.sector_book_metrics")
    assert set(metrics["pair_policy"]) == {"qrdqn"}
    assert set(metrics["cost_multiplier"]) == {1.0, 2.0, 3.0}
    book_rows = metrics.filter(pl.col("strategy") == "sector_book")
    assert (book_rows["trades"] > 0).all()
    # cost stress: net at 3x costs is lower than at 1x for a book that trades
    m1 = book_rows.filter(pl.col("cost_multiplier") == 1.0)["total_return"].to_numpy()
    m3 = book_rows.filter(pl.col("cost_multiplier") == 3.0)["total_return"].to_numpy()
    assert (m3 < m1).all()
    assert set(read_table(wh, "eval.sector_book_regimes")["regime"]) <= {"Bull", "Sideways", "Bear"}


@pytest.mark.slow
def test_walk_forward_track_report_and_analyst_views(book):
    resources, _, _, wf = book
    assert wf.success
    wh = resources["warehouse"].get()
    track = read_table(wh, "eval.sector_book_walk_forward_daily")
    assert set(track["fold"]) == {"2012", "2013"}
    assert track.filter(pl.col("strategy") == "sector_book")["date"].is_sorted()
    report = resources["warehouse"].report_dir() / "sector_book.html"
    html = report.read_text()
    assert "Survivorship" in html and "synthetic" in html.lower()
    with wh.read() as con:
        trades = con.execute("SELECT count(*), count(DISTINCT fold) FROM analytics.sector_book_trades").fetchone()
        post = con.execute("SELECT count(*), min(alpha), min(beta) FROM analytics.bandit_posterior").fetchone()
        perf = con.execute("SELECT count(*) FROM analytics.sector_book_performance").fetchone()
    assert trades[0] > 0 and trades[1] == 2
    assert post[0] > 0 and post[1] >= 1.0 and post[2] >= 1.0
    assert perf[0] == 3 * (len(BOOK_VARIANTS) + len(COMPARISONS))


@pytest.mark.slow
def test_corrupt_qrdqn_file_falls_back_to_the_zscore_rule(book):
    resources, instance, _, _ = book
    wh = resources["warehouse"].get()
    rec = artifact_records(wh, "pairs_qrdqn", ["2013"]).row(0, named=True)
    path = resources["warehouse"].artifact_root() / rec["path"]
    path.write_bytes(b"not a checkpoint")
    res = dg.materialize(ALL, resources=resources, instance=instance, partition_key="2013",
                         selection=[EVAL_SECTOR_BOOK])
    assert res.success
    logs = [e.message for e in instance.all_logs(res.run_id) if e.message]
    assert any("falling back to the z-score rule" in m for m in logs)
    metrics = read_table(wh, "eval.sector_book_metrics").filter(pl.col("fold") == "2013")
    assert set(metrics["pair_policy"]) == {"zscore (fallback)"}
    daily = read_table(wh, "eval.sector_book_daily").filter(pl.col("fold") == "2013")
    a = daily.filter(pl.col("strategy") == "sector_book").sort("date")["net_return"].to_numpy()
    b = daily.filter(pl.col("strategy") == "sector_book_zscore").sort("date")["net_return"].to_numpy()
    assert (a == b).all()  # the QR-DQN variant now trades its pairs by the z-score rule
    assert date(2013, 1, 1) <= daily["date"].min()
