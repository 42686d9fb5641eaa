"""The asset graph carries the data: every model input arrives by lineage, and every stage's asset runs by
direct invocation on in-memory inputs (no warehouse table read by name)."""
import dataclasses
import json
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from assets import decisions, evaluation, features, folds, ingestion, policies, prescreen, qlearning, regimes
from assets.keys import (
    DECISIONS_DAILY,
    OPS_INPUT_FRESHNESS,
    EVAL_FOLD,
    EVAL_WALK_FORWARD,
    FEATURES_DAILY,
    MODELS_POLICY_PPO,
    MODELS_PRESCREEN,
    MONITORING_DRIFT,
    RAW_BARS,
    REF_FOLDS,
    REGIMES_SECTOR_HMM,
    REGIMES_SECTOR_HMM_LIVE,
    REGIMES_VIX,
)
from infra.io_managers import FoldModel, FoldModels, LoadedModel
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
from ml.agents.ppo import PPOPolicy
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.dataset import OBSERVATION_VARIANTS, policy_panel
from ml.labels import compute_labels
from orchestration.definitions import defs
from warehouse.catalog import CATALOG

REPO = Path(__file__).resolve().parents[1]


def test_policy_reads_the_feature_store_and_its_folds_regimes_and_prescreen_by_lineage():
    graph = defs.resolve_asset_graph()
    parents = {k: graph.get(k).parent_keys for k in (MODELS_POLICY_PPO, EVAL_FOLD, DECISIONS_DAILY, MONITORING_DRIFT)}
    assert {FEATURES_DAILY, REGIMES_SECTOR_HMM, MODELS_PRESCREEN, REGIMES_VIX, REF_FOLDS} <= parents[MODELS_POLICY_PPO]
    assert RAW_BARS not in parents[MODELS_POLICY_PPO]  # no second feature pipeline from raw bars
    assert {MODELS_POLICY_PPO, FEATURES_DAILY, REGIMES_SECTOR_HMM, MODELS_PRESCREEN} <= parents[EVAL_FOLD]
    assert {MODELS_POLICY_PPO, MODELS_PRESCREEN, REGIMES_SECTOR_HMM_LIVE, FEATURES_DAILY,
            OPS_INPUT_FRESHNESS} <= parents[DECISIONS_DAILY]
    assert {DECISIONS_DAILY, MODELS_POLICY_PPO} <= parents[MONITORING_DRIFT]
    assert {REGIMES_SECTOR_HMM} <= graph.get(REGIMES_SECTOR_HMM_LIVE).parent_keys
    assert {EVAL_FOLD} <= graph.get(EVAL_WALK_FORWARD).parent_keys
    # per-fold models consume the SAME fold's upstream (identity mapping on the fold partitions)
    for key in (MODELS_POLICY_PPO, EVAL_FOLD):
        assert graph.get(key).partitions_def == graph.get(REGIMES_SECTOR_HMM).partitions_def
        assert graph.get(key).partitions_def.name == FOLDS


def test_assets_name_no_table_and_only_warehouse_writes_sql():
    tables = {spec.table for store in CATALOG.values() for spec in store.parts.values()}
    for path in sorted((REPO / "assets").glob("*.py")) + sorted((REPO / "infra").glob("*.py")):
        text = path.read_text()
        for table in tables:
            assert f'"{table}"' not in text and f"'{table}'" not in text, (path.name, table)
    for pkg in ("assets", "infra", "orchestration", "ml"):
        for path in (REPO / pkg).rglob("*.py"):
            text = path.read_text()
            for sql in ("SELECT ", "INSERT INTO", "DELETE FROM", "CREATE TABLE"):
                assert sql not in text, (str(path.relative_to(REPO)), sql)


@pytest.fixture(scope="module")
def inputs():
    """A small synthetic market and what the upstream assets would hand to each stage."""
    market = generate_market(Universe(include_stocks=False, sector_etfs=["XLB", "XLE", "XLF", "XLK", "XLV"],
                                      history_start=date(2008, 1, 1)), seed=9, end=date(2014, 12, 31))
    bars = market.bars.with_columns(pl.lit("synthetic").alias("source"))
    return {"bars": bars, "index_bars": market.index_bars, "sectors": market.sectors}


def _context(instance=None, partition=None):
    return dg.build_asset_context(instance=instance, partition_key=partition)


def test_every_stage_runs_by_direct_invocation_on_in_memory_inputs(inputs, tmp_path):
    """ingestion → features → folds → regimes → prescreen → policy (observing HMM breadth and prescreen
    scores) → evaluation → walk-forward → decision, each fed the previous outputs in memory."""
    bars, index_bars, sectors = inputs["bars"], inputs["index_bars"], inputs["sectors"]
    calendar = ingestion.trading_calendar(_context(), market=MarketDataResource(), bars=bars)
    assert calendar["date"].to_list() == bars.filter(pl.col("ticker") == "SPY")["date"].sort().to_list()

    warehouse = WarehouseResource(path=str(tmp_path / "absent.duckdb"), reports_dir=str(tmp_path / "reports"))
    feats = features.features_daily(_context(), config=features.WriteWindowConfig(), features=FeatureStoreResource(),
                                    warehouse=warehouse, bars=bars, index_bars=index_bars)
    assert feats.height == bars.height and set(feats["source"]) == {"synthetic"}
    labels = compute_labels(bars)

    instance = dg.DagsterInstance.ephemeral()
    fold_frame = folds.folds(_context(instance), calendar=calendar)
    assert "2014" in instance.get_dynamic_partitions(FOLDS) and "2014" in fold_frame["key"].to_list()
    vix = regimes.vix_regime_table(_context(), regimes=RegimeResource(), index_bars=index_bars, calendar=calendar)

    ctx = _context(instance, "2014")
    hmm = regimes.sector_hmm(ctx, regimes=RegimeResource(hmm_restarts=1), bars=bars, sectors=sectors,
                             folds=fold_frame)
    assert isinstance(hmm, FoldModel) and set(hmm.model.fitted) and {"main", "summary"} <= set(hmm.tables)
    policy_res = PolicyResource(total_steps=4096, num_envs=16, episode_length=128, observation="all",
                                offpolicy_total_steps=2048, offpolicy_num_envs=16, qlearning_epochs_scale=0.02)
    models = prescreen.prescreen_models(ctx, prescreen=PrescreenResource(cv_splits=2, n_jobs=1), policy=policy_res,
                                        features=feats, labels=labels, vix=vix, folds=fold_frame)
    assert [g.name for g in models.model.generations] == ["g1", "g2", "final"]  # the policy observes the scores
    final_only = dataclasses.replace(models.model, generations=models.model.generations[-1:])
    with pytest.raises(ValueError, match="causal train-window scores"):
        policy_panel(feats, OBSERVATION_VARIANTS["prescreen"], prescreen=final_only, vix_regimes=vix)
    assert models.tables["main"]["date"].min().year == 2014  # test-window scores
    loaded_prescreen = LoadedModel(models.model, "2014", "2014/prescreen.joblib", "-", {})

    panel_inputs = {"features": feats, "vix": vix, "folds": fold_frame,
                    "sector_probabilities": hmm.tables["main"], "prescreen": loaded_prescreen}
    trained = policies.policy_ppo(ctx, policy=policy_res, **panel_inputs)
    policy = trained.model
    assert isinstance(policy, PPOPolicy) and trained.tables["main"].height >= 1
    assert {"sectors.p_bull", "sectors.p_bear", "SPY.prescreen", "vix_term"} <= set(policy.obs_names)

    loaded_policy = LoadedModel(policy, "2014", "2014/policy_ppo.pt", "-", {})
    members = {"ppo": loaded_policy}
    for kind in ("sac", "td3"):
        out = getattr(policies, f"policy_{kind}")(ctx, policy=policy_res, **panel_inputs)
        assert out.model.kind == kind and out.model.obs_names == policy.obs_names
        assert {"grad_steps", "qf_loss", "val_sharpe", "seed"} <= set(out.tables["main"].columns)
        members[kind] = LoadedModel(out.model, "2014", f"2014/policy_{kind}.pt", "-", {})
    seeded = policies.policy_td3(ctx, policy=PolicyResource(**{**policy_res.model_dump(), "seeds": 2}), **panel_inputs)
    assert seeded.model.kind == "ensemble" and seeded.model.names == ["seed0", "seed1"]  # a seed ensemble
    assert seeded.model.member_weights == {"seed0": 0.5, "seed1": 0.5} and set(seeded.tables["main"]["seed"]) == {0, 1}
    ensemble = policies.policy_ensemble(ctx, policy=policy_res, **members, **panel_inputs)
    table = ensemble.tables["main"]
    assert table["member"].to_list() == ["ppo", "sac", "td3"] and abs(table["weight"].sum() - 1.0) < 1e-12
    assert {"val_return", "spy_val_return", "sortino", "composite", "fallback_equal"} <= set(table.columns)
    loaded = {f"policy_{k}": m for k, m in members.items()}
    loaded["policy_ensemble"] = LoadedModel(ensemble.model, "2014", "2014/policy_ensemble.pt", "-", {})
    book = qlearning.qlearning_book(ctx, policy=policy_res, features=feats.filter(pl.col("ticker") == "SPY"),
                                    folds=fold_frame)
    assert len(book.model.members) == 32 and book.tables["main"]["in_stack"].sum() == 4
    loaded["qlearning"] = LoadedModel(book.model, "2014", "2014/qlearning.joblib", "-", {})
    ev = evaluation.fold_evaluation(ctx, policy=policy_res, regimes=RegimeResource(), risk=RiskResource(),
                                    warehouse=warehouse, **loaded, **panel_inputs)
    assert {"main", "allocations", "metrics"} == set(ev)
    assert {"ppo", "sac", "td3", "ensemble", "equal_weight", "spy_buy_hold", "q_best", "q_stack", "q_el_switch",
            "ppo_switch"} <= set(ev["main"]["strategy"])
    assert (tmp_path / "reports" / "fold_2014.html").is_file()

    per_fold = {part: frame.with_columns(pl.lit("2014").alias("fold")) for part, frame in ev.items()}
    wf = evaluation.walk_forward(_context(), policy=policy_res, regimes=RegimeResource(), warehouse=warehouse,
                                 evaluations=per_fold, folds=fold_frame, vix=vix, calendar=calendar)
    assert wf["main"]["date"].min() >= date(2014, 1, 1) and wf["metrics"].height > 0

    fresh_out, fresh_check = ingestion.input_freshness_table(_context(), market=MarketDataResource(), bars=bars,
                                                             index_bars=index_bars, calendar=calendar)
    freshness = fresh_out.value
    assert fresh_check.passed and not freshness["stale"].any() and freshness.height == bars["ticker"].n_unique() + 2
    live = regimes.sector_hmm_live(_context(), bars=bars, sectors=sectors, folds=fold_frame,
                                   hmms=FoldModels.of({"2014": LoadedModel(hmm.model, "2014", "-", "-", {})}))
    out = decisions.daily_decisions(
        _context(), config=decisions.DecisionConfig(), policy=policy_res, risk=RiskResource(), warehouse=warehouse,
        features=feats.filter(pl.col("ticker").is_in(list(policy.assets))), vix=vix, folds=fold_frame,
        policies=FoldModels.of({"2014": loaded_policy}), sac_policies=FoldModels.of({}), td3_policies=FoldModels.of({}),
        ensemble_policies=FoldModels.of({}), prescreen=FoldModels.of({"2014": loaded_prescreen}), live_states=live,
        freshness=freshness)
    row = out.value.row(0, named=True)
    as_of = json.loads(row["inputs_as_of"])
    assert {as_of[a] for a in [*policy.assets, "VIX"]} == {"2014-12-31"} and row["stale_inputs"] == []
    assert {k for k in as_of if k.startswith("sector:")} == {f"sector:{s}" for s in live["sector"].unique()}
    assert row["decision_date"] == date(2014, 12, 31) and row["fold"] == "2014"
    assert np.isclose(sum(row["target_weights"]), 1.0) and row["obs_names"] == list(policy.obs_names)
