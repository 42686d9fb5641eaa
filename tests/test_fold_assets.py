"""Per-fold assets on synthetic data: folds become partitions; HMMs, prescreen and PPO fit on the train window only."""
import dagster as dg
import polars as pl
import pytest
import torch

from assets import features, folds, ingestion, policies, prescreen, regimes
from assets.keys import MODELS_POLICY_PPO, MODELS_PRESCREEN, REGIMES_SECTOR_HMM
from ml.agents.checkpoint import load_checkpoint
from orchestration.partitions import FOLDS
from orchestration.resources import (
    FeatureStoreResource,
    MarketDataResource,
    PolicyResource,
    PrescreenResource,
    RegimeResource,
    WarehouseResource,
)
from warehouse.artifacts import artifact
from warehouse.folds import read_fold
from warehouse.tables import read_table

UNPARTITIONED = dg.load_assets_from_modules([ingestion, features, folds, regimes])
PER_FOLD = dg.load_assets_from_modules([regimes, prescreen, policies])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folds")
    resources = {
        "warehouse": WarehouseResource(path=str(tmp / "wh.duckdb")),
        "market": MarketDataResource(source="synthetic", history_start="2008-01-01", history_end="2014-12-31",
                                     include_stocks=False),
        "features": FeatureStoreResource(lookahead_cutoffs=2),
        "regimes": RegimeResource(hmm_restarts=2),
        "prescreen": PrescreenResource(cv_splits=2, n_jobs=1),
        "policy": PolicyResource(total_steps=8192, num_envs=16, episode_length=128),
    }
    instance = dg.DagsterInstance.ephemeral()
    prep = dg.materialize(UNPARTITIONED, resources=resources, instance=instance,
                          selection=dg.AssetSelection.all() - dg.AssetSelection.assets(REGIMES_SECTOR_HMM))
    assert prep.success
    keys = instance.get_dynamic_partitions(FOLDS)
    results = {k: dg.materialize(PER_FOLD, resources=resources, instance=instance, partition_key=k,
                                 selection=[REGIMES_SECTOR_HMM, MODELS_PRESCREEN, MODELS_POLICY_PPO])
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
        metrics = read_table(wh, "eval.prescreen_metrics", "WHERE fold = ?", [key])
        assert set(metrics["side"]) == {"buy", "sell"}
        curve = read_table(wh, "models.ppo_training", "WHERE fold = ?", [key])
        assert curve.height >= 1
        ckpt = artifact(wh, key, "policy_ppo")
        policy = load_checkpoint(ckpt["path"])
        assert isinstance(policy, torch.nn.Module)


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
