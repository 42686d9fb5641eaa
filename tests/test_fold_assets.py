"""Per-fold assets on synthetic data: folds become partitions; HMMs, prescreen and PPO fit on the train window only."""
from datetime import date

import dagster as dg
import polars as pl
import pytest
import torch

from assets import evaluation, features, folds, ingestion, policies, prescreen, qlearning, regimes
from assets.keys import (
    EVAL_FOLD,
    EVAL_WALK_FORWARD,
    POLICY_KEYS,
    MODELS_PRESCREEN,
    MODELS_QLEARNING,
    REGIMES_SECTOR_HMM,
    REGIMES_SECTOR_HMM_LIVE,
)
from infra.partitions import FOLDS
from infra.resources import (
    FeatureStoreResource,
    MarketDataResource,
    PolicyResource,
    PrescreenResource,
    RegimeResource,
    RiskResource,
    WarehouseResource,
)
from ml.agents.checkpoint import load_checkpoint
from ml.folds import fold_from_frame
from orchestration.definitions import storage_resources
from warehouse.catalog import artifact_records
from warehouse.tables import read_table

UNPARTITIONED = dg.load_assets_from_modules([ingestion, features, folds, regimes])
PER_FOLD = [*dg.load_assets_from_modules([ingestion, features, folds, regimes, prescreen, policies, qlearning,
                                          evaluation]),
            *dg.load_asset_checks_from_modules([regimes, prescreen, qlearning])]


def read_fold(wh, key):
    return fold_from_frame(read_table(wh, "ref.folds"), key)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folds")
    resources = {
        **storage_resources(WarehouseResource(path=str(tmp / "wh.duckdb"), reports_dir=str(tmp / "reports"))),
        "market": MarketDataResource(source="synthetic", history_start="2008-01-01", history_end="2014-12-31",
                                     include_stocks=False),
        "features": FeatureStoreResource(lookahead_cutoffs=2),
        "regimes": RegimeResource(hmm_restarts=2),
        "prescreen": PrescreenResource(cv_splits=2, n_jobs=1),
        "policy": PolicyResource(total_steps=8192, num_envs=16, episode_length=128, offpolicy_total_steps=2048,
                                 offpolicy_num_envs=16, qlearning_epochs_scale=0.02),
        "risk": RiskResource(research_enabled=True),
    }
    instance = dg.DagsterInstance.ephemeral()
    prep = dg.materialize(UNPARTITIONED, resources=resources, instance=instance,
                          selection=dg.AssetSelection.all() - dg.AssetSelection.assets(REGIMES_SECTOR_HMM,
                                                                                      REGIMES_SECTOR_HMM_LIVE))
    assert prep.success
    keys = instance.get_dynamic_partitions(FOLDS)
    results = {k: dg.materialize(PER_FOLD, resources=resources, instance=instance, partition_key=k,
                                 selection=[REGIMES_SECTOR_HMM, MODELS_PRESCREEN, *POLICY_KEYS.values(), MODELS_QLEARNING,
                                            EVAL_FOLD])
               for k in ("2013", "2014")}
    return resources, instance, keys, results


@pytest.mark.slow
def test_folds_are_registered_as_partitions(pipeline):
    resources, _, keys, _ = pipeline
    assert keys == ["2012", "2013", "2014"]  # yearly folds from 2012; data ends 2014 so no seed fold
    wh = resources["warehouse"].get()
    fold = read_fold(wh, "2014")
    assert fold.train_end < fold.test_start and fold.test_start.year == 2014
    with pytest.raises(KeyError, match="materialize ref/folds"):
        read_fold(wh, "1999")


@pytest.mark.slow
def test_two_folds_materialize_and_fit_only_on_train(pipeline):
    resources, _, _, results = pipeline
    assert all(r.success for r in results.values())
    wh = resources["warehouse"].get()
    for key, result in results.items():  # the fold outputs' look-ahead checks ran on their own fold
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        for name in ("sector_hmm_no_lookahead", "prescreen_scores_no_lookahead", "qlearning_states_no_lookahead"):
            assert checks[name].passed and checks[name].metadata["fold"].value == key, (key, name)
    for key in ("2013", "2014"):
        fold = read_fold(wh, key)
        hmm = read_table(wh, "regimes.sector_hmm", "WHERE fold = ?", [key])
        assert hmm["date"].min() >= fold.train_start and hmm["date"].max() <= fold.test_end
        summary = read_table(wh, "regimes.sector_hmm_summary", "WHERE fold = ?", [key])
        assert summary.height >= 8  # sector ETFs with enough history (XLRE/XLC list later)
        scores = read_table(wh, "models.prescreen_scores", "WHERE fold = ?", [key])
        assert scores["date"].min() >= fold.test_start and scores["date"].max() <= fold.test_end
        trained = read_table(wh, "models.prescreen_summary", "WHERE fold = ?", [key])
        assert (trained["train_last_label_end"].drop_nulls() <= fold.train_end).all()
        assert set(trained["generation"]) >= {"final"}
        metrics = read_table(wh, "eval.prescreen_metrics", "WHERE fold = ?", [key])
        assert set(metrics["side"]) == {"buy", "sell"}
        curve = read_table(wh, "models.ppo_training", "WHERE fold = ?", [key])
        assert curve.height >= 1
        ckpt = artifact_records(wh, "policy_ppo", [key]).row(0, named=True)
        assert not ckpt["path"].startswith("/") and ckpt["path"].startswith(f"{key}/")  # relative to the root
        root = resources["warehouse"].artifact_root()
        policy = load_checkpoint(root / ckpt["path"], sha256=ckpt["sha256"])
        assert isinstance(policy, torch.nn.Module)
        # every learner fits before the validation slice and the ensemble weighs them on it
        assert fold.validation_start is not None and fold.fit_window()[1] < fold.validation_start
        for kind in ("ppo", "sac", "td3", "ensemble"):
            rec = artifact_records(wh, f"policy_{kind}", [key]).row(0, named=True)
            model = load_checkpoint(root / rec["path"], sha256=rec["sha256"])
            assert model.kind == kind
            assert date.fromisoformat(model.train_window[1]) < fold.validation_start, (kind, model.train_window)
        for kind in ("sac", "td3"):
            curve = read_table(wh, f"models.{kind}_training", "WHERE fold = ?", [key])
            assert curve.height >= 1 and curve["val_sharpe"].drop_nans().drop_nulls().len() >= 1
        weights = read_table(wh, "models.ensemble_weights", "WHERE fold = ?", [key])
        assert sorted(weights["member"]) == ["ppo", "sac", "td3"] and abs(weights["weight"].sum() - 1.0) < 1e-12


@pytest.mark.slow
def test_rematerializing_a_fold_replaces_its_rows(pipeline):
    resources, instance, _, _ = pipeline
    wh = resources["warehouse"].get()
    before = read_table(wh, "regimes.sector_hmm").height
    again = dg.materialize(PER_FOLD, resources=resources, instance=instance, partition_key="2013",
                           selection=[REGIMES_SECTOR_HMM])
    assert again.success
    assert read_table(wh, "regimes.sector_hmm").height == before
    assert read_table(wh, "regimes.sector_hmm").select(
        pl.struct("fold", "sector", "date").is_duplicated().any()).item() is False


@pytest.mark.slow
def test_evaluation_walk_forward_report_and_views(pipeline, tmp_path):
    import duckdb

    resources, instance, _, _ = pipeline
    wh = resources["warehouse"].get()
    m = read_table(wh, "eval.fold_metrics", "WHERE fold = '2014' AND cost_multiplier = 1.0")
    assert {"ppo", "ppo_breaker", "ppo_switch", "sac", "td3", "ensemble", "spy_buy_hold", "equal_weight", "sixty_forty",
            "vix_rule", "vix_switch", "q_best", "q_stack", "q_stack_switch", "q_el",
            "q_el_switch"} == set(m["strategy"])  # research breaker switched on in this module's resources
    wf = dg.materialize(PER_FOLD, resources=resources, instance=instance, selection=[EVAL_WALK_FORWARD])
    assert wf.success
    meta = wf.asset_materializations_for_node("eval__walk_forward")[0].metadata
    assert meta["folds"].value == ["2013", "2014"] and meta["missing_folds"].value == ["2012"]
    html = open(meta["report"].value).read()
    assert "SYNTHETIC DATA" in html and "data:image/png;base64" in html and "https://" not in html
    track = read_table(wh, "eval.walk_forward_daily")
    ppo = track.filter(pl.col("strategy") == "ppo")
    assert ppo["date"].is_sorted() and ppo["date"].min().year == 2013 and ppo["date"].max().year == 2014
    con = duckdb.connect(str(wh.snapshot_path), read_only=True)  # what analysts open
    try:
        perf = con.execute("SELECT fold, strategy, sharpe, risk_free FROM analytics.fold_performance").fetchall()
        assert {r[0] for r in perf} == {"2013", "2014"} and all(r[3] == 0.0 for r in perf)
        buckets = con.execute("SELECT vix_bucket, sum(days) FROM analytics.allocations_by_regime "
                              "WHERE strategy = 'ppo' GROUP BY ALL").fetchall()
        assert sum(n for _, n in buckets) == ppo.height
        latest = con.execute("SELECT fold, strategy, date FROM analytics.latest_allocation").fetchall()
        # 4 policies, breaker, PPO under the switcher, 5 Q-learning strategies, 5 baselines
        assert {r[0] for r in latest} == {"2014"} and len(latest) == 16
        assert con.execute("SELECT count(*) FROM analytics.walk_forward_daily").fetchall()[0][0] == track.height
    finally:
        con.close()


@pytest.mark.slow
def test_qlearning_book_per_fold(pipeline):
    """32 members fitted on the fold's fit window, one best and one stack member per simulation chosen; the
    evaluation's E.L. is twice the model of models (cash pays for the leverage), the switcher overrides."""
    resources, _, _, _ = pipeline
    wh = resources["warehouse"].get()
    members = read_table(wh, "models.qlearning_members", "WHERE fold = '2014'")
    assert members.height == 32 and members["is_best"].sum() == 1 and members["in_stack"].sum() == 4
    assert members.filter(pl.col("in_stack")).group_by("simulation").len()["len"].to_list() == [1, 1, 1, 1]
    best = members.filter(pl.col("is_best")).row(0, named=True)
    assert best["validation_score"] == members["validation_score"].max()
    grid = read_table(wh, "models.qlearning_switch_grid", "WHERE fold = '2014'")
    assert grid.height == 16 and grid["share_on"].is_between(0, 1).all()
    alloc = read_table(wh, "eval.allocations", "WHERE fold = '2014'")
    w = {s: alloc.filter(pl.col("strategy") == s).sort("date") for s in ("q_stack", "q_el", "q_stack_switch")}
    assert (w["q_el"]["w_SPY"] - 2 * w["q_stack"]["w_SPY"]).abs().max() < 1e-12
    assert (w["q_el"]["w_SPY"] + w["q_el"]["w_cash"] - 1.0).abs().max() < 1e-12
    on = w["q_stack_switch"]["w_SPY"] != w["q_stack"]["w_SPY"]
    assert (w["q_stack_switch"].filter(on)["w_SPY"] == 0.5).all()


def _norm(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


@pytest.mark.slow
def test_a_run_killed_after_the_first_table_leaves_the_folds_previous_rows_intact(pipeline, monkeypatch):
    """models/prescreen writes four tables and its artifact record in one transaction: a failure after the
    first table rolls everything back, and the new artifact file does not linger."""
    import warehouse.catalog as catalog
    from ml.artifacts import load_joblib

    resources, instance, _, _ = pipeline
    wh = resources["warehouse"].get()
    root = resources["warehouse"].artifact_root()
    tables = ["models.prescreen_scores", "models.prescreen_summary", "eval.prescreen_metrics",
              "eval.prescreen_calibration"]
    before = {t: _norm(read_table(wh, t, "WHERE fold = '2013'")) for t in tables}
    assert all(f.height for f in before.values())
    record = artifact_records(wh, "prescreen", ["2013"])
    files = sorted(p.name for p in (root / "2013").iterdir())
    real, calls = catalog.replace_rows, []

    def killed_after_the_first_table(con, table, frame, where="", params=None):
        calls.append(table)
        n = real(con, table, frame, where, params)
        if len(calls) == 1:
            raise RuntimeError("killed after the first table")
        return n

    monkeypatch.setattr(catalog, "replace_rows", killed_after_the_first_table)
    result = dg.materialize(PER_FOLD, resources=resources, instance=instance, partition_key="2013",
                            selection=[MODELS_PRESCREEN], raise_on_error=False)
    assert not result.success and calls == ["models.prescreen_scores"]
    for t in tables:
        assert _norm(read_table(wh, t, "WHERE fold = '2013'")).equals(before[t]), t
    assert artifact_records(wh, "prescreen", ["2013"]).equals(record)
    assert sorted(p.name for p in (root / "2013").iterdir()) == files  # no orphan artifact file
    rec = record.row(0, named=True)
    assert load_joblib(root / rec["path"], rec["sha256"]).fold.key == "2013"  # the previous model, verified
