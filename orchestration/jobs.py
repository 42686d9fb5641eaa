"""Jobs.

* ``prepare``: everything that is not per fold (ingestion, features, labels, VIX regimes, folds) with checks;
  the feature store's look-ahead check runs in full mode (96 cutoffs, every calendar class).
* ``fold``: the per-fold assets (sector HMMs, prescreen, policies, evaluation, the sector and stock books), one run
  per fold partition.
* ``report``: the walk-forward track over all folds, its report and the analyst views.
* ``decide``: the deployed fold's live sector-HMM states, the daily decision and the drift statistics
  (no ingestion).
* ``nightly``: incremental ingestion → features/labels (incremental writes) → checks → VIX regimes and
  folds → live sector-HMM states → daily decision → drift statistics. The nightly schedule runs it; its
  look-ahead check runs in fast mode (8 cutoffs, calendar classes in rotation: see ``ml.lookahead``).
* ``ingest``: ingestion only.

``regimeflow run`` (the README's main job) runs ``prepare``, ``fold`` for every fold partition, ``report``
and ``decide``.
"""
import dagster as dg

from assets.keys import (
    DECISIONS_DAILY,
    EVAL_FOLD,
    EVAL_SECTOR_BOOK,
    EVAL_SECTOR_BOOK_WALK_FORWARD,
    EVAL_STOCK_BOOK,
    EVAL_STOCK_BOOK_WALK_FORWARD,
    EVAL_WALK_FORWARD,
    FEATURES_DAILY,
    LABELS_FORWARD,
    MODELS_PAIRS_QRDQN,
    MODELS_POLICY_ENSEMBLE,
    MODELS_POLICY_PPO,
    MODELS_POLICY_SAC,
    MODELS_POLICY_TD3,
    MODELS_PRESCREEN,
    MODELS_QLEARNING,
    MODELS_SECTOR_PAIRS,
    MODELS_STOCK_FUNNEL,
    MODELS_STOCK_RL,
    MONITORING_DRIFT,
    REF_FOLDS,
    REF_TRADING_CALENDAR,
    REGIMES_SECTOR_HMM,
    REGIMES_SECTOR_HMM_LIVE,
    REGIMES_VIX,
)
from infra.resources import LOOKAHEAD_MODE_TAG

FOLD_ASSETS = dg.AssetSelection.assets(REGIMES_SECTOR_HMM, MODELS_PRESCREEN, MODELS_POLICY_PPO, MODELS_POLICY_SAC,
                                       MODELS_POLICY_TD3, MODELS_POLICY_ENSEMBLE, MODELS_QLEARNING, EVAL_FOLD,
                                       MODELS_SECTOR_PAIRS, MODELS_PAIRS_QRDQN, EVAL_SECTOR_BOOK,
                                       MODELS_STOCK_FUNNEL, MODELS_STOCK_RL, EVAL_STOCK_BOOK)
DECIDE_ASSETS = dg.AssetSelection.assets(REGIMES_SECTOR_HMM_LIVE, DECISIONS_DAILY, MONITORING_DRIFT)

#: Tag of the runs that rewrite shared, unpartitioned tables: the cluster instance (deploy/cluster/dagster.yaml)
#: runs at most one of them at a time; fold runs (their own partitions) are not limited by it.
SHARED_WAREHOUSE_TAGS = {"regimeflow/warehouse": "shared"}

#: The nightly job's run config: incremental ingestion and incremental feature/label writes.
NIGHTLY_RUN_CONFIG = {
    "ops": {
        "market_data": {"config": {"mode": "incremental"}},
        "features__daily": {"config": {"incremental": True}},
        "labels__forward": {"config": {"incremental": True}},
    }
}

ingest_job = dg.define_asset_job(
    "ingest", selection=dg.AssetSelection.groups("ingestion"), tags=SHARED_WAREHOUSE_TAGS,
    description="Load market data into raw.* / ref.* and run the blocking data-quality checks.",
)
prepare_job = dg.define_asset_job(
    "prepare", selection=dg.AssetSelection.all() - FOLD_ASSETS.downstream(),
    tags={LOOKAHEAD_MODE_TAG: "full", **SHARED_WAREHOUSE_TAGS},
    description="Everything not per fold: ingestion, features, labels, VIX regimes, folds (with checks), and the "
    "research reproductions on their own protocols (research group).",
)
fold_job = dg.define_asset_job(
    "fold", selection=FOLD_ASSETS,
    description="Per-fold models and evaluation for one fold partition (sector HMMs, prescreen, PPO, SAC, TD3, "
    "their ensemble, the Q-learning book, eval; the sector book's pairs, QR-DQN pair policy and evaluation; the "
    "stock book's funnel, RL ensemble and evaluation).",
)
report_job = dg.define_asset_job(
    "report", selection=dg.AssetSelection.assets(EVAL_WALK_FORWARD, EVAL_SECTOR_BOOK_WALK_FORWARD,
                                       EVAL_STOCK_BOOK_WALK_FORWARD), tags=SHARED_WAREHOUSE_TAGS,
    description="Across folds: the stitched walk-forward tracks (allocation, sector and stock books), their reports and "
    "the analyst views.",
)
decide_job = dg.define_asset_job(
    "decide", selection=DECIDE_ASSETS, tags=SHARED_WAREHOUSE_TAGS,
    description="The deployed (newest) fold's live sector-HMM states, the daily decision(s) and the drift statistics.",
)
nightly_job = dg.define_asset_job(
    "nightly",
    selection=dg.AssetSelection.groups("ingestion")
    | dg.AssetSelection.assets(REF_TRADING_CALENDAR, FEATURES_DAILY, LABELS_FORWARD, REGIMES_VIX, REF_FOLDS)
    | DECIDE_ASSETS,
    config=NIGHTLY_RUN_CONFIG,
    tags={LOOKAHEAD_MODE_TAG: "fast", **SHARED_WAREHOUSE_TAGS},
    description="After the US close: new bars (incremental, with overlap) → features → checks → regimes and "
    "folds → today's decision → drift statistics. Catches up missed sessions; a night without new data decides "
    "nothing.",
)

ALL_JOBS = [ingest_job, prepare_job, fold_job, report_job, decide_job, nightly_job]
